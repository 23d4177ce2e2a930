"""cirrhosis-cramps: muscle cramps or twitching in a patient with cirrhosis.

When it fires
    Cirrhosis is present (the strict value set: no fibrosis-only codes) **and** muscle
    cramp or fasciculation is present (Conditions or Observations, catalogue section 1).

Indicator
    warning when the latest recent potassium or magnesium (``lab_recent_days``) is low,
    info otherwise.

When it stays silent
    No present cirrhosis or no present cramp / fasciculation (refuted, entered-in-error,
    resolved records do not count); or the whole advice is already addressed: recent
    potassium and magnesium results exist and neither is low, and (with a cramp)
    baclofen and albumin are active.

What the card says and suggests
    Muscle cramps are common in cirrhosis on diuretics (it names an active diuretic);
    correct potassium and magnesium; for severe cramps baclofen 10 mg/day, raised by
    10 mg/day each week to at most 30 mg/day; albumin 20-40 g/week may help;
    alternatives are orphenadrine, methocarbamol or quinidine 400 mg/day (diarrhoea in
    about a third). Suggestions, each left out when already addressed:

    * with a cramp (not for twitching alone, see below): baclofen 10 mg once daily
      (MedicationRequest coded with the product table's baclofen 10 MG Oral Tablet,
      RxNorm 197391, because the ingredient has no verified code; 1 tablet by mouth once
      daily, the weekly titration in the dosage text; ``maxDosePerPeriod`` 30 mg/day),
      unless baclofen is active;
    * with a cramp: albumin 20-40 g/week as **advice in the card text, not an order**,
      unless albumin is active: human albumin has no verified RxNorm code and the
      guideline gives a weekly amount, not a dose, route and schedule a prescriber could
      sign as it stands;
    * basic metabolic panel (LOINC 24321-2) unless a recent potassium result exists or
      the panel is ordered or done in the window; serum magnesium (LOINC 19123-9)
      likewise for magnesium.

Guideline
    000, Muscle Cramps in Cirrhosis: "Common in patients on diuretic therapy for
    ascites"; "May respond to correction of electrolyte abnormalities (hypokalemia,
    hypomagnesemia)". 000, Treatment, for muscle cramps in cirrhosis: "Baclofen 10
    mg/day, with weekly increases of 10 mg/day up to 30 mg/day for severe muscle
    cramps"; "Albumin 20-40 g/week may provide relief"; "Correct electrolyte
    abnormalities (potassium, magnesium)"; "Alternative agents include orphenadrine,
    methocarbamol, or quinidine 400 mg/day (though diarrhea occurs in one-third of
    cases)".

What changed and why (clinical review)
    Albumin was suggested as a MedicationRequest with no code and no dose, which an EHR
    cannot sign: it is now advice in the text. The baclofen order now states its route.

Where the guideline text wins over the catalogue
    The catalogue fires on cramp or fasciculation and always offers baclofen and
    albumin. The guideline gives both for "muscle cramps in cirrhosis" only, and its
    Note says baclofen is "not specifically for benign fasciculations". So for
    twitching without a cramp the card keeps the electrolyte advice and orders, names
    the diuretic, and offers neither drug (and stays silent when the electrolytes are
    recent and normal).

Choices where the catalogue and guidelines are silent
    The record cannot tell whether cramps are severe: the baclofen order is offered
    with "for severe cramps" in its text, for the clinician to judge. Only potassium and
    magnesium make the card a warning (the two the guideline names for cirrhosis; a low
    calcium is ``electrolyte-abnormal``'s). Alternatives are named, not ordered. A
    baclofen or albumin that the patient already takes counts as that advice addressed.

Unknown is not absent
    "No potassium result" / "No magnesium result" (and the order that goes with it) only when the
    Observations and DiagnosticReports arrived whole; a recent result whose value could not be read
    is stated as such with its date, never as no result, and is not judged low.
"""

from __future__ import annotations

from ..fhir.terminology import ingredient_coding
from ._baclofen import START_MG, suggested_order
from ._electrolytes import finding_line, order_suggestions, result_line
from .card import Action, Card, Suggestion, render_detail
from .clinical import (
    MedUse,
    active_medications,
    already_done,
    findings,
    ingredient_names,
    lab_absent,
    latest_lab,
    using,
)
from .orders import describe
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"

ALBUMIN_TEXT = ("Human albumin 20-40 g per week for muscle cramps in cirrhosis "
                "(dose, product and route per clinician).")


def _diuretic(use: MedUse) -> str:
    """The diuretic ingredient(s) of a medication use, by name: ``furosemide``."""
    return ", ".join(ingredient_coding(n)["display"] for n in sorted(use.ingredients & ingredient_names("diuretic")))


def _summary(cramp: bool, diuretics: list[str], low: list[str], checks: list[str], treatments: list[str]) -> str:
    """``Cramps in cirrhosis on furosemide: correct low potassium; check magnesium; consider baclofen``."""
    head = f"{'Cramps' if cramp else 'Twitching'} in cirrhosis"
    advice = ([f"correct low {' and '.join(low)}"] if low else [])
    advice += [f"check {' and '.join(checks)}"] if checks else []
    advice += [f"consider {' and '.join(treatments)}"] if treatments else []
    summary = f"{head} on {', '.join(diuretics)}: {'; '.join(advice)}" if diuretics else ""
    return summary if summary and len(summary) < 140 else f"{head}: {'; '.join(advice)}"


def _create(resource: dict, label: str) -> Suggestion:
    return Suggestion(label=label, actions=[Action("create", f"Order: {describe(resource)}", resource)])


@rule(
    id="cirrhosis-cramps",
    triggers=(("cirrhosis",), ("cramp", "fasciculation")),
    title="Muscle cramps in cirrhosis",
    hooks=("patient-view",),
    indicator="warning",
    reads={
        "conditions": ("cirrhosis", "cramp", "fasciculation"),
        "observations": ("cirrhosis", "cramp", "fasciculation", "potassium_lab", "magnesium_lab"),
        "medicationRequests": (),
        "medicationStatements": (),
        "serviceRequests": ("bmp_panel", "magnesium_order"),
        "procedures": ("bmp_panel", "magnesium_order"),
        "diagnosticReports": ("bmp_panel", "magnesium_order"),
    },
    source=Source("000", sections=("Muscle Cramps in Cirrhosis", "Treatment")),
)
def evaluate(call: Call) -> Card | None:
    """Cramp care in cirrhosis: electrolytes, baclofen, albumin; a warning when K or Mg is low."""
    cirrhosis = findings(call.record, "cirrhosis")
    symptoms = findings(call.record, "cramp", "fasciculation")
    if not cirrhosis or not symptoms:
        return None
    window = call.settings.lab_recent_days
    potassium = latest_lab(call.record, "potassium", call.now, window)
    magnesium = latest_lab(call.record, "magnesium", call.now, window)
    low = [r for r in (potassium, magnesium) if r is not None and r.low]
    meds = active_medications(call.record)
    diuretics = using(meds, "diuretic")
    baclofen = using(meds, "baclofen")
    albumin = using(meds, "albumin_human")

    cramps = [f for f in symptoms if f.valueset == "cramp"]
    has_cramp = bool(cramps)
    suggestions: list[Suggestion] = []
    treatments: list[str] = []
    advice: list[str] = []
    if has_cramp and not baclofen:
        order = suggested_order(call, START_MG, reasons=cramps,
                                note="For severe muscle cramps in cirrhosis (guideline schedule).")
        if order is not None:
            suggestions.append(_create(order, "Start baclofen 10 mg once daily (weekly titration to 30 mg/day)"))
            treatments.append("baclofen")
    if has_cramp and not albumin:
        advice.append(f"Albumin: {ALBUMIN_TEXT} Not offered as an order: human albumin has no verified RxNorm code "
                      f"and the guideline gives a weekly amount, not a dose and schedule to sign.")
        treatments.append("albumin")
    # "no result" (and its order) only when it can be said: the results arrived whole, none in doubt
    absent = {lab: lab_absent(call.record, lab, call.now, window) for lab in ("potassium", "magnesium")}
    panels = {name: window for name, lab in (("bmp_panel", "potassium"), ("magnesium_order", "magnesium"))
              if absent[lab] and not already_done(call.record, name, call.now, window)}
    suggestions += order_suggestions(call, symptoms, panels)
    if not suggestions and not low and not advice:
        return None

    why = [finding_line(f) for f in cirrhosis[:1]] + [finding_line(f) for f in symptoms[:2]]
    why += [f"Diuretic active: {_diuretic(u)} ({u.label})" for u in diuretics]
    why += [result_line(r) for r in (potassium, magnesium) if r is not None]
    why += [f"No {name} result in the last {window} days" for name, r in
            (("potassium", potassium), ("magnesium", magnesium)) if r is None and absent[name]]
    why += [f"Baclofen already active: {u.label}" for u in baclofen]
    why += [f"Albumin already active: {u.label}" for u in albumin]
    if not has_cramp:
        why.append("Twitching without a recorded cramp: baclofen and albumin are cramp treatments, not offered.")
    why += advice
    detail = render_detail(why=why, guideline=[
        "Muscle cramps are common in patients on diuretic therapy for ascites and may respond to correction of "
        f"electrolyte abnormalities (hypokalemia, hypomagnesemia) ({CITE_000} — Muscle Cramps in Cirrhosis).",
        "For severe muscle cramps: baclofen 10 mg/day, with weekly increases of 10 mg/day up to 30 mg/day "
        f"({CITE_000} — Treatment).",
        f"Albumin 20-40 g/week may provide relief ({CITE_000} — Treatment).",
        "Alternative agents: orphenadrine, methocarbamol, or quinidine 400 mg/day (diarrhea occurs in about "
        f"one third) ({CITE_000} — Treatment).",
    ])
    summary = _summary(cramp=has_cramp,
                       diuretics=list(dict.fromkeys(_diuretic(u) for u in diuretics)),
                       low=[r.lab for r in low], treatments=treatments,
                       checks=[{"bmp_panel": "potassium", "magnesium_order": "magnesium"}[p] for p in panels])
    return Card(summary=summary, indicator="warning" if low else "info", detail=detail, suggestions=suggestions)
