"""baclofen-titration: the next weekly baclofen step for cramps in cirrhosis.

When it fires
    Cirrhosis and muscle cramp are present **and** baclofen is active at a known total
    daily dose under 30 mg **and** that dose started or last changed at least
    ``baclofen_step_days`` ago (default 7). The daily dose is the catalogue's dose
    arithmetic (``doseQuantity`` in mg, or tablets x the product strength, times the
    administrations a day); the start or change is the order's ``authoredOn`` (a
    statement's effective start) or a later dosage ``boundsPeriod.start``.

When it stays silent
    No cirrhosis or no cramp (fasciculation alone does not count: the guideline's
    baclofen schedule is for cramps); no active baclofen; a dose that cannot be computed
    (text only, a range, an unknown unit, a multi-step schedule) or two active baclofen
    records with different doses; a dose already at or above 30 mg/day; the last start
    or change too recent or undated.

What the card suggests (info)
    Raise baclofen by 10 mg/day, never above 30 mg/day, as **one suggestion that replaces
    the current order**: an ``update`` of the active baclofen MedicationRequest setting its
    status to ``stopped``, and a ``create`` of the new order (regimen and coding as in
    ``_baclofen``: whole tablets, the patient's number of doses a day when it divides,
    ``maxDosePerPeriod`` 30 mg/day, by mouth) whose ``priorPrescription`` points to the
    stopped one. Accepting it leaves one active baclofen order. When the current baclofen
    is known only from a MedicationStatement (no order to stop), the suggestion creates
    the new order and the card says to stop the recorded baclofen.

What changed and why (clinical review)
    The card created a new order beside the active one: accepting it left two active
    baclofen orders (double dosing) unless the EHR stopped the first. The guideline's
    "weekly increases" are changes of one regimen; the change is now one suggestion.

Guideline
    000, Treatment (muscle cramps in cirrhosis): "Baclofen 10 mg/day, with weekly
    increases of 10 mg/day up to 30 mg/day for severe muscle cramps".

Choices where the catalogue and guidelines are silent
    Whether cramps persist is taken from the cramp finding still being present; the
    card says "if cramps persist" and leaves the decision to the clinician. An undated
    baclofen order is not titrated (we cannot tell that a week has passed).
"""

from __future__ import annotations

import copy

from ._baclofen import MAX_MG, STEP_MG, current_daily_mg, last_change, suggested_order, times_per_day
from ._electrolytes import finding_line
from .card import Action, Card, Suggestion, render_detail
from .clinical import active_medications, findings, using
from .orders import describe
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"


@rule(
    id="baclofen-titration",
    triggers=(("cirrhosis",), ("cramp",)),
    title="Baclofen titration for cramps in cirrhosis (replaces the current order)",
    hooks=("patient-view",),
    indicator="info",
    reads={
        "conditions": ("cirrhosis", "cramp"),
        "observations": ("cirrhosis", "cramp"),
        "medicationRequests": (),
        "medicationStatements": (),
    },
    source=Source("000", sections=("Treatment",)),
)
def evaluate(call: Call) -> Card | None:
    """Suggest the next baclofen step (+10 mg/day, at most 30) when the last step is a week old."""
    cirrhosis = findings(call.record, "cirrhosis")
    cramps = findings(call.record, "cramp")
    if not cirrhosis or not cramps:
        return None
    uses = using(active_medications(call.record), "baclofen")
    current = current_daily_mg(uses)
    if current is None or current >= MAX_MG:
        return None
    changed = last_change(uses)
    if changed is None or (call.now - changed).total_seconds() < call.settings.baclofen_step_days * 86400:
        return None
    new = min(current + STEP_MG, MAX_MG)
    prior = next((u for u in uses if u.kind == "MedicationRequest" and u.reference), None)
    order = suggested_order(call, new, times_now=times_per_day(uses[0].resource), reasons=cramps,
                            note=f"Weekly step from {current:g} mg/day (guideline schedule for cramps in cirrhosis).")
    why = [finding_line(f) for f in cirrhosis[:1]] + [finding_line(f) for f in cramps[:1]]
    why.append(f"Baclofen {current:g} mg/day ({uses[0].label}), started or last changed on {changed:%Y-%m-%d}.")
    actions = []
    if order is None:
        why.append(f"No baclofen tablet in the product table gives {new:g} mg/day in whole tablets: no order is "
                   f"offered.")
    else:
        stoppable = [u for u in uses if u.kind == "MedicationRequest" and isinstance(u.resource.get("id"), str)]
        for use in stoppable:
            stopped = {**copy.deepcopy(use.resource), "status": "stopped"}
            actions.append(Action("update", f"Stop the current order: {use.label}", stopped))
        if prior is not None:
            order["priorPrescription"] = {"reference": prior.reference, "display": prior.label}
        actions.append(Action("create", f"Order: {describe(order)}", order))
        recorded = [u for u in uses if u not in stoppable]
        if recorded:
            why.append("Stop the recorded baclofen when the new order starts: "
                       + ", ".join(f"{u.label} ({u.kind})" for u in recorded) + ".")
    detail = render_detail(why=why, guideline=[
        "For severe muscle cramps in cirrhosis: baclofen 10 mg/day, with weekly increases of 10 mg/day up to "
        f"30 mg/day ({CITE_000} — Treatment).",
    ])
    suggestions = [Suggestion(label=f"Raise baclofen to {new:g} mg/day (replaces the current order)",
                              actions=actions)] if actions else []
    return Card(
        summary=f"Baclofen {current:g} mg/day for a week or more: if cramps persist, raise to {new:g} mg/day",
        indicator="info", detail=detail, suggestions=suggestions,
    )
