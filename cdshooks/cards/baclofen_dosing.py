"""baclofen-dosing: a baclofen order checked against the guideline's cramp schedule.

Hooks: order-select (the selected drafts) and order-sign (every draft). Each baclofen
order judged gets at most one card.

When it fires (warning)
    The order's total daily dose is computable (catalogue section 3 arithmetic) and
    exceeds the smallest of these ceilings that applies:

    * 30 mg/day when cirrhosis is present (the guideline's maximum);
    * 10 mg/day for a first baclofen order (no active baclofen: the starting dose);
    * the active dose + 10 mg/day when baclofen is active at a known dose (the weekly
      step).

    The card states the schedule and suggests the corrected order as an ``update`` of
    the draft (same id): the draft as written, with its dosage replaced by the ceiling
    dose (regimen as in ``_baclofen``) and ``maxDosePerPeriod`` 30 mg/day. When the
    record has no cirrhosis, cramp or spasticity diagnosis, the card also carries the
    note on the FDA-approved indication.

Info instead
    No dose problem (or a dose that cannot be computed), and no cirrhosis, muscle cramp
    or spasticity diagnosis: baclofen is FDA-approved for spasticity from multiple
    sclerosis and spinal cord disease, not for fasciculations, and used off-label for
    cramps.

Unknown is not absent
    The info card says "No cirrhosis, muscle cramp or spasticity diagnosis in the
    record" only when the Conditions and Observations arrived whole; otherwise it says
    that this could not be checked (the indication note is still worth showing). The
    draft is read tolerantly: a faulty element no rule reads (the CDS Hooks sandbox's
    ``category`` object) never loses the check, and the corrected draft is valid R4.

When it stays silent
    Not a baclofen order; a dose within the ceilings with one of those diagnoses
    present; a spasticity patient's order (see below) without cirrhosis.

Guideline
    000, Treatment (muscle cramps in cirrhosis): "Baclofen 10 mg/day, with weekly
    increases of 10 mg/day up to 30 mg/day for severe muscle cramps". 000, Note:
    "Baclofen is FDA-approved for spasticity from multiple sclerosis and spinal cord
    diseases, not specifically for benign fasciculations, but is used off-label for
    muscle cramps".

Choices where the catalogue and guidelines are silent, and one disagreement
    The catalogue applies the 10 mg start and the 10 mg/day step to every baclofen
    order; the guideline gives that schedule for muscle cramps only. For a patient with
    a spasticity diagnosis (multiple sclerosis, spinal cord disease) the labelled
    spasticity titration applies, which starts higher and climbs faster, so the start
    and step ceilings are not applied there (the 30 mg/day ceiling still is in
    cirrhosis). An active baclofen whose dose cannot be computed disables the step
    ceiling and the first-order ceiling (it is not a first order). The corrected draft
    keeps the drafted product, route and other fields; only the dosage changes.
"""

from __future__ import annotations

import copy

from ._baclofen import MAX_MG, START_MG, STEP_MG, current_daily_mg, dosage_text, regimen, times_per_day
from .card import Action, Card, Suggestion, render_detail
from .clinical import MedUse, active_medications, findings, medication_of, using
from .orders import medication_request
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"
SCHEDULE = ("For severe muscle cramps in cirrhosis: baclofen 10 mg/day, with weekly increases of 10 mg/day up to "
            f"30 mg/day ({CITE_000} — Treatment).")
INDICATION = ("Baclofen is FDA-approved for spasticity from multiple sclerosis and spinal cord diseases, not "
              f"specifically for benign fasciculations, but is used off-label for muscle cramps ({CITE_000} — Note).")
# Dosage elements kept from the draft when its dose is corrected.
_KEEP = ("route", "method", "site", "patientInstruction", "additionalInstruction", "asNeededBoolean",
         "asNeededCodeableConcept")


def corrected_draft(call: Call, draft: dict, daily_mg: float) -> dict:
    """The draft with its dosage replaced by ``daily_mg`` mg/day (same id, same medication)."""
    per_mg, times = regimen(daily_mg, times_per_day(draft))
    template = medication_request(call.patient_id, "baclofen", dose_mg=per_mg, times_per_day=times,
                                  text=dosage_text(per_mg, times, daily_mg), max_mg_per_day=MAX_MG)
    dosage = template["dosageInstruction"][0]
    original = next((d for d in draft.get("dosageInstruction") or [] if isinstance(d, dict)), {})
    kept = {k: copy.deepcopy(v) for k, v in original.items() if k in _KEEP}
    fixed = copy.deepcopy(draft)
    fixed["dosageInstruction"] = [{**kept, **dosage}]
    return fixed


def _ceilings(proposed: float, active: list[MedUse], cirrhosis: bool, schedule: bool) -> list[tuple[float, str]]:
    """(ceiling mg/day, why) for every ceiling the proposed dose exceeds."""
    out = []
    if cirrhosis and proposed > MAX_MG:
        out.append((MAX_MG, f"above the {MAX_MG:g} mg/day maximum in cirrhosis"))
    if schedule and not active and proposed > START_MG:
        out.append((START_MG, f"a first baclofen order above the {START_MG:g} mg/day starting dose"))
    current = current_daily_mg(active)
    if schedule and current is not None and proposed > current + STEP_MG:
        out.append((current + STEP_MG, f"a raise of {proposed - current:g} mg/day over the active "
                                       f"{current:g} mg/day (step: {STEP_MG:g} mg/day each week)"))
    return out


def _judge(call: Call, order: dict, use: MedUse, active: list[MedUse], cirrhosis: bool, cramp: bool,
           spasticity: bool) -> Card | None:
    proposed = use.daily_mg
    indicated = cirrhosis or cramp or spasticity
    problems = [] if proposed is None else _ceilings(proposed, active, cirrhosis, schedule=not spasticity)
    if problems:
        target = min(c for c, _ in problems)
        why = [f"Baclofen order: {use.label}, {proposed:g} mg/day — " + "; ".join(w for _, w in problems) + "."]
        why += [f"Active baclofen: {u.label}" + (f", {u.daily_mg:g} mg/day" if u.daily_mg is not None else "")
                for u in active]
        guideline = [SCHEDULE] + ([] if indicated else [INDICATION])
        suggestions = []
        if isinstance(order.get("id"), str):
            fixed = corrected_draft(call, order, target)
            suggestions.append(Suggestion(
                label=f"Change the order to {target:g} mg/day",
                actions=[Action("update", f"Baclofen {target:g} mg/day instead of {proposed:g} mg/day", fixed)]))
        return Card(summary=f"Baclofen {proposed:g} mg/day exceeds the guideline schedule: use {target:g} mg/day",
                    indicator="warning", detail=render_detail(why=why, guideline=guideline), suggestions=suggestions)
    if not indicated:
        why = [f"Baclofen order: {use.label}."]
        if call.record.complete("Condition", "Observation"):
            why.append("No cirrhosis, muscle cramp or spasticity diagnosis in the record.")
        else:  # unknown is not absent
            why.append("Whether a cirrhosis, muscle cramp or spasticity diagnosis is on the record could not be "
                       "checked: the conditions and observations received were incomplete.")
        return Card(summary="Baclofen is FDA-approved for spasticity (MS, spinal cord disease); cramps are off-label",
                    indicator="info", detail=render_detail(why=why, guideline=[INDICATION, SCHEDULE]))
    return None


@rule(
    id="baclofen-dosing",
    title="Baclofen dose and indication check",
    hooks=("order-select", "order-sign"),
    indicator="warning",
    reads={
        "conditions": ("cirrhosis", "cramp", "spasticity"),
        "observations": ("cirrhosis", "cramp", "spasticity"),
        "medicationRequests": (),
        "medicationStatements": (),
    },
    source=Source("000", sections=("Treatment", "Note")),
)
def evaluate(call: Call) -> list[Card]:
    """One card per baclofen order: a corrected dose (warning) or the indication note (info)."""
    uses = [(o, medication_of(o, call.record)) for o in call.orders]
    baclofen = [(o, u) for o, u in uses if u is not None and u.has("baclofen")]
    if not baclofen:
        return []
    active = using(active_medications(call.record), "baclofen")
    cirrhosis = bool(findings(call.record, "cirrhosis"))
    cramp = bool(findings(call.record, "cramp"))
    spasticity = bool(findings(call.record, "spasticity"))
    cards = [_judge(call, o, u, active, cirrhosis, cramp, spasticity) for o, u in baclofen]
    return [c for c in cards if c is not None]
