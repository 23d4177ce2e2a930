"""quinidine-caution: a quinidine order, with the guideline's cramp dose and its diarrhoea rate.

Hooks: order-select (the selected drafts) and order-sign (every draft); one card per
quinidine order.

When it fires
    An order names quinidine (RxNorm ingredient 9068, a quinidine product of the
    product table, a contained Medication, or the word "quinidine"; quinine is a
    different drug and does not count).

Indicator
    warning when the order's total daily dose is above 400 mg/day: computed by the
    catalogue's arithmetic (section 3), or, for a tablet count of a quinidine sulfate
    code that the product table lists for both the 200 mg and 300 mg tablets (RxNorm
    852877 / 852913: the source lists both codes for one product and does not say which
    is which), for **each** possible strength: warning when even the smaller strength is
    above 400 mg/day, or when the larger one is (the card then gives the range and asks
    to check the strength). info otherwise, including when no dose can be computed (the
    card then states no dose).

What the card says (no suggestions)
    Quinidine prolongs the QT interval and can cause ventricular arrhythmias
    (proarrhythmia, torsade de pointes), as its FDA labeling warns: check the QTc and
    potassium and magnesium before and during treatment. Diarrhoea occurs in about one
    third of patients; the guideline dose for cramps is 400 mg/day. The card does not
    rewrite the order (an ECG order has no verified code here; the advice is text): the
    guideline gives a cramp dose, and quinidine has other indications whose doses it
    does not cover.

Guideline
    000, Treatment (muscle cramps in cirrhosis): "Alternative agents include
    orphenadrine, methocarbamol, or quinidine 400 mg/day (though diarrhea occurs in
    one-third of cases)". The guideline is silent on the QT effect; it comes from the
    drug's FDA labeling (the review asked for it).

What changed and why (clinical review)
    * QT prolongation / proarrhythmia is named beside diarrhoea: a pharmacist would not
      sign a quinidine card that mentions only diarrhoea.
    * Doses are computed for every quinidine product the table holds: gluconate 324 mg
      (852920), and the sulfate codes 852877 / 852913 whose strength is 200 or 300 mg
      (both computed, as a range).

Choices where the catalogue and guidelines are silent
    The guideline does not name the salt. The ordered milligrams are compared as
    written (the product table's strengths are the labelled salt: quinidine gluconate
    324 mg, quinidine sulfate 200 or 300 mg); the card names the product so the reader
    sees the salt.
"""

from __future__ import annotations

from dataclasses import replace

from .card import Card, render_detail
from .clinical import MedUse, daily_dose_mg, medication_of
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"
CRAMP_DOSE_MG = 400.0
GUIDELINE = [
    "Alternative agents for muscle cramps in cirrhosis include orphenadrine, methocarbamol, or quinidine "
    f"400 mg/day, though diarrhea occurs in one-third of cases ({CITE_000} — Treatment).",
    "The guideline does not discuss the heart; quinidine's FDA labeling warns that it prolongs the QT interval and "
    "can cause ventricular arrhythmias (proarrhythmia, torsade de pointes).",
]
QT = ("Quinidine prolongs the QT interval and can cause proarrhythmia (torsade de pointes): check the QTc, "
      "potassium and magnesium before starting and during treatment.")


def _dose_range(use: MedUse) -> tuple[float, float] | None:
    """The daily dose, or (for a code shared by several strengths) its lowest and highest value."""
    if use.daily_mg is not None:
        return use.daily_mg, use.daily_mg
    product = use.product
    if product is None or not product.strengths_mg:
        return None
    doses = [daily_dose_mg(use.resource, replace(product, strength_mg=s)) for s in product.strengths_mg]
    if any(d is None for d in doses):
        return None
    known = [d for d in doses if d is not None]
    return min(known), max(known)


def _card(use: MedUse) -> Card:
    dose = _dose_range(use)
    if dose is not None and dose[1] > CRAMP_DOSE_MG:
        low, high = dose
        shown = f"{high:g} mg/day" if low == high else f"{low:g}-{high:g} mg/day"
        line = f"Quinidine order: {use.label}, {shown}, above the {CRAMP_DOSE_MG:g} mg/day cramp dose."
        if low != high and use.product is not None:
            sizes = " or ".join(f"{s:g} mg" for s in use.product.strengths_mg)
            line = (f"Quinidine order: {use.label}, {shown} depending on the tablet ({sizes}: the code is listed "
                    f"for both), above the {CRAMP_DOSE_MG:g} mg/day cramp dose at least with the larger: check the "
                    f"strength.")
        why = [line, QT]
        summary = f"Quinidine {shown} is above the 400 mg/day cramp dose; QT prolongation, diarrhea in 1 in 3"
        return Card(summary=summary if len(summary) < 140 else "Quinidine above the 400 mg/day cramp dose: QT, "
                    "diarrhea", indicator="warning", detail=render_detail(why=why, guideline=GUIDELINE))
    if dose is None:
        stated = " (daily dose not computable from the order)"
    else:
        stated = f", {dose[1]:g} mg/day" if dose[0] == dose[1] else f", {dose[0]:g}-{dose[1]:g} mg/day"
    why = [f"Quinidine order: {use.label}{stated}.", QT]
    return Card(summary="Quinidine: QT prolongation and proarrhythmia; diarrhea in 1 in 3; cramp dose 400 mg/day",
                indicator="info", detail=render_detail(why=why, guideline=GUIDELINE))


@rule(
    id="quinidine-caution",
    title="Quinidine: QT prolongation, diarrhea and the 400 mg/day cramp dose",
    hooks=("order-select", "order-sign"),
    indicator="warning",
    reads={},
    source=Source("000", sections=("Treatment",)),
)
def evaluate(call: Call) -> list[Card]:
    """One card per quinidine order: info, or a warning above 400 mg/day."""
    uses = [medication_of(o, call.record) for o in call.orders]
    return [_card(u) for u in uses if u is not None and u.has("quinidine")]
