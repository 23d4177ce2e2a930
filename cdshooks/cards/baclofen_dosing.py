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
    No dose problem, and no cirrhosis, muscle cramp or spasticity diagnosis: baclofen is
    FDA-approved for spasticity from multiple sclerosis and spinal cord disease, not for
    fasciculations, and used off-label for cramps.

A dose that cannot be read (info)
    When the order's daily dose cannot be computed (a dose quantity that is a string, NaN
    or in a unit that is not mass or tablets of a known strength; no timing, or a timing
    that does not say how often; a dose range; a stepped schedule) and a ceiling could
    apply (cirrhosis present or not ruled out, or no spasticity diagnosis), the card says
    so ("its dose could not be read: its daily dose was not checked against the guideline
    schedule") with the schedule, and the indication note when it applies. RULES.md
    section 3 says "When the dose cannot be computed, do not guess: no dose card": this
    card guesses no dose, states no ceiling and suggests no corrected order; it only says
    that the check could not be made, so that silence is not read as a dose that passed.
    A spasticity patient without cirrhosis gets no such card (no ceiling applies).

Unknown is not absent
    The info card says "No cirrhosis, muscle cramp or spasticity diagnosis in the
    record" only when the Conditions and Observations arrived whole and none of those
    diagnoses is in doubt (a status that cannot be read, ``clinical.findings_in_doubt``);
    otherwise it says that this could not be checked (the indication note is still worth
    showing). The warning says "No cirrhosis" on the same terms; when cirrhosis cannot be
    ruled out it says so and quotes the cirrhosis schedule with its 30 mg/day maximum (the
    30 mg/day ceiling itself is applied only when cirrhosis is present). A spasticity diagnosis
    whose status cannot be read does not lift the start and step ceilings (quiet rather than
    permissive); the warning then names it. The
    draft is read tolerantly: a faulty element no rule reads (the CDS Hooks sandbox's
    ``category`` object) never loses the check, and the corrected draft is valid R4.

When it stays silent
    Not a baclofen order; a dose within the ceilings with one of those diagnoses
    present; a spasticity patient's order (see below) without cirrhosis, whether its dose
    can be read or not.

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
    keeps the drafted product, route and other fields; only the dosage changes, unless
    the drafted tablet cannot give the dose in whole tablets (below).

What changed and why (clinical review)
    * Whole tablets: the corrected order is written in whole tablets of a product in the
      table (``_baclofen.tablet_plan``): a 20 mg tablet drafted at 10 mg twice daily
      becomes the 10 mg tablet twice daily (the product is replaced, the rest of the
      draft kept); no whole-tablet plan, no corrected order (the card says so). The guideline
      is silent on tablets; a half-tablet order is a dispensing error waiting to happen.
    * Outside cirrhosis the card no longer calls 10 mg/day and 10 mg weekly steps "the
      guideline schedule": 000 gives them "for severe muscle cramps" in cirrhosis only. The
      ceilings still apply as a cautious start for off-label cramp use (our choice, quiet
      rather than permissive), and the card says they are borrowed; the corrected order's
      text then carries no titration schedule.
    * Every corrected order is coded (RxNorm product) and states dose, route (by mouth) and
      frequency.
"""

from __future__ import annotations

import copy

from ..fhir.terminology import Product
from ._baclofen import MAX_MG, START_MG, STEP_MG, current_daily_mg, dosage_text, tablet_plan, times_per_day
from .card import Action, Card, Suggestion, render_detail
from .clinical import (
    FINDING_TYPES,
    MedUse,
    absence,
    active_medications,
    dose_unreadable,
    findings,
    findings_in_doubt,
    medication_of,
    using,
)
from .orders import medication_request
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"
SCHEDULE = ("For severe muscle cramps in cirrhosis: baclofen 10 mg/day, with weekly increases of 10 mg/day up to "
            f"30 mg/day ({CITE_000} — Treatment).")
# Outside cirrhosis the guideline gives no baclofen schedule: the same numbers are offered as a cautious
# start, and said to be borrowed.
NO_SCHEDULE = ("The guideline gives a baclofen schedule only for severe muscle cramps in cirrhosis (10 mg/day, "
               "weekly steps of 10 mg/day, at most 30 mg/day); for this patient, without cirrhosis, it has no "
               f"schedule ({CITE_000} — Treatment).")
INDICATION = ("Baclofen is FDA-approved for spasticity from multiple sclerosis and spinal cord diseases, not "
              f"specifically for benign fasciculations, but is used off-label for muscle cramps ({CITE_000} — Note).")
# Dosage elements kept from the draft when its dose is corrected.
_KEEP = ("route", "method", "site", "patientInstruction", "additionalInstruction", "asNeededBoolean",
         "asNeededCodeableConcept")


def corrected_draft(call: Call, draft: dict, daily_mg: float, product: Product | None,
                    schedule: bool = True) -> dict | None:
    """The draft with its dosage replaced by ``daily_mg`` mg/day in whole tablets (same id), or None.

    The drafted product is kept when its strength gives the doses in whole tablets; else the
    plan's tablet replaces it (``_baclofen.tablet_plan``). None: no whole-tablet plan exists.
    """
    plan = tablet_plan(daily_mg, times_per_day(draft), keep=product)
    if plan is None:
        return None
    per_mg, times, tablet = plan
    template = medication_request(call.patient_id, "baclofen", dose_mg=per_mg, times_per_day=times,
                                  text=dosage_text(per_mg, times, daily_mg, tablet, schedule=schedule),
                                  max_mg_per_day=MAX_MG, product=tablet.rxnorm)
    dosage = template["dosageInstruction"][0]
    original = next((d for d in draft.get("dosageInstruction") or [] if isinstance(d, dict)), {})
    kept = {k: copy.deepcopy(v) for k, v in original.items() if k in _KEEP}
    fixed = copy.deepcopy(draft)
    fixed["dosageInstruction"] = [{**dosage, **kept}]
    if product is None or product.rxnorm != tablet.rxnorm:
        ref = fixed.pop("medicationReference", None)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str) and ref["reference"].startswith("#"):
            contained = [c for c in fixed.get("contained") or [] if not (isinstance(c, dict)
                                                                       and c.get("id") == ref["reference"][1:])]
            if contained:
                fixed["contained"] = contained
            else:
                fixed.pop("contained", None)
        fixed["medicationCodeableConcept"] = template["medicationCodeableConcept"]
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
    # "no cirrhosis" only when it can be said: the findings arrived whole, none of them in doubt
    whole = call.record.complete(*FINDING_TYPES)
    cirrhosis_unsure = not cirrhosis and (not whole or bool(findings_in_doubt(call.record, "cirrhosis")))
    spasticity_unsure = not spasticity and bool(findings_in_doubt(call.record, "spasticity"))
    problems = [] if proposed is None else _ceilings(proposed, active, cirrhosis, schedule=not spasticity)
    if problems:
        target = min(c for c, _ in problems)
        why = [f"Baclofen order: {use.label}, {proposed:g} mg/day — " + "; ".join(w for _, w in problems) + "."]
        why += [f"Active baclofen: {u.label}" + (f", {u.daily_mg:g} mg/day" if u.daily_mg is not None else "")
                for u in active]
        if cirrhosis_unsure:
            why.append("Whether cirrhosis is on the record could not be checked: the record received was incomplete "
                       "or partly unreadable. The 10 mg/day start and 10 mg/day weekly step are the cirrhosis cramp "
                       f"schedule, offered here as a cautious start; in cirrhosis the maximum is {MAX_MG:g} mg/day.")
        if spasticity_unsure:
            why.append("A spasticity diagnosis is on the record whose status could not be read: if spasticity is the "
                       "indication, the labelled spasticity titration applies instead of this cautious start.")
        if not cirrhosis and not cirrhosis_unsure:
            why.append("No cirrhosis: the 10 mg/day start and 10 mg/day weekly step are the cirrhosis cramp "
                       "schedule, offered here as a cautious start for off-label use, not as a guideline schedule "
                       "for this patient.")
        guideline = ([SCHEDULE] if cirrhosis or cirrhosis_unsure else [NO_SCHEDULE]) + (
            [] if indicated else [INDICATION])
        suggestions = []
        if isinstance(order.get("id"), str):
            fixed = corrected_draft(call, order, target, use.product, schedule=cirrhosis)
            if fixed is None:
                why.append(f"No baclofen tablet in the product table gives {target:g} mg/day in whole tablets: "
                           f"no corrected order is offered.")
            else:
                dose = fixed["dosageInstruction"][0]
                per = dose["doseAndRate"][0]["doseQuantity"]["value"]
                chosen = (fixed.get("medicationCodeableConcept") or {}).get("coding", [{}])[0]
                if use.product is None or chosen.get("code") != use.product.rxnorm:
                    drafted = use.product.display if use.product is not None else use.label
                    why.append(f"{drafted} does not give {per:g} mg doses in whole tablets: the corrected order uses "
                               f"{chosen.get('display')}.")
                suggestions.append(Suggestion(
                    label=f"Change the order to {target:g} mg/day",
                    actions=[Action("update", f"Baclofen {target:g} mg/day instead of {proposed:g} mg/day", fixed)]))
        summary = (f"Baclofen {proposed:g} mg/day exceeds the guideline schedule: use {target:g} mg/day" if cirrhosis
                   else f"Baclofen {proposed:g} mg/day: use {target:g} mg/day (cautious dosing; the guideline "
                        f"schedule is for cirrhosis)")
        return Card(summary=summary, indicator="warning", detail=render_detail(why=why, guideline=guideline),
                    suggestions=suggestions)
    unreadable = dose_unreadable(use.resource, use.product) if proposed is None else None
    if unreadable is not None and (cirrhosis or cirrhosis_unsure or not spasticity):
        why = [f"Baclofen order: {use.label} — {unreadable}: its daily dose was not checked against the "
               f"guideline schedule. Check the dose before signing."]
        if not indicated:
            why.append(absence(call.record, FINDING_TYPES,
                               "No cirrhosis, muscle cramp or spasticity diagnosis in the record.",
                               "a cirrhosis, muscle cramp or spasticity diagnosis is on the record",
                               unsure=bool(findings_in_doubt(call.record, "cirrhosis", "cramp", "spasticity"))))
        guideline = [SCHEDULE if cirrhosis or cirrhosis_unsure else NO_SCHEDULE] + ([] if indicated else [INDICATION])
        return Card(summary="Baclofen order: the dose could not be read, so it was not checked against the schedule",
                    indicator="info", detail=render_detail(why=why, guideline=guideline))
    if not indicated:
        why = [f"Baclofen order: {use.label}.",
               absence(call.record, FINDING_TYPES, "No cirrhosis, muscle cramp or spasticity diagnosis in the record.",
                       "a cirrhosis, muscle cramp or spasticity diagnosis is on the record",
                       unsure=bool(findings_in_doubt(call.record, "cirrhosis", "cramp", "spasticity")))]
        return Card(summary="Baclofen is FDA-approved for spasticity (MS, spinal cord disease); cramps are off-label",
                    indicator="info", detail=render_detail(why=why, guideline=[
                        INDICATION, SCHEDULE if cirrhosis_unsure else NO_SCHEDULE]))
    return None


@rule(
    id="baclofen-dosing",
    title="Baclofen dose (whole tablets) and indication check",
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
