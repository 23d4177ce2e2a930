"""quinidine-caution: a quinidine order, with the guideline's cramp dose and its diarrhoea rate.

Hooks: order-select (the selected drafts) and order-sign (every draft); one card per
quinidine order.

When it fires
    An order names quinidine (RxNorm ingredient 9068, a quinidine product of the
    product table, a contained Medication, or the word "quinidine"; quinine is a
    different drug and does not count).

Indicator
    warning when the order's total daily dose is computable (catalogue section 3) and
    above 400 mg/day; info otherwise, including when the dose cannot be computed (then
    the card states no dose).

What the card says (no suggestions)
    Diarrhoea occurs in about one third of patients; the guideline dose for cramps is
    400 mg/day. The card does not rewrite the order: the guideline gives a cramp dose,
    and quinidine has other indications whose doses it does not cover.

Guideline
    000, Treatment (muscle cramps in cirrhosis): "Alternative agents include
    orphenadrine, methocarbamol, or quinidine 400 mg/day (though diarrhea occurs in
    one-third of cases)".

Choices where the catalogue and guidelines are silent
    The guideline does not name the salt. The ordered milligrams are compared as
    written (the product table's strengths are the labelled salt: quinidine gluconate
    324 mg, quinidine sulfate 200 or 300 mg); the card names the product so the reader
    sees the salt.
"""

from __future__ import annotations

from .card import Card, render_detail
from .clinical import MedUse, medication_of
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"
CRAMP_DOSE_MG = 400.0
GUIDELINE = [
    "Alternative agents for muscle cramps in cirrhosis include orphenadrine, methocarbamol, or quinidine "
    f"400 mg/day, though diarrhea occurs in one-third of cases ({CITE_000} — Treatment).",
]


def _card(use: MedUse) -> Card:
    dose = use.daily_mg
    if dose is not None and dose > CRAMP_DOSE_MG:
        why = [f"Quinidine order: {use.label}, {dose:g} mg/day, above the {CRAMP_DOSE_MG:g} mg/day cramp dose."]
        return Card(summary=f"Quinidine {dose:g} mg/day is above the 400 mg/day cramp dose; diarrhea in 1 in 3",
                    indicator="warning", detail=render_detail(why=why, guideline=GUIDELINE))
    stated = f", {dose:g} mg/day" if dose is not None else " (daily dose not computable from the order)"
    why = [f"Quinidine order: {use.label}{stated}."]
    return Card(summary="Quinidine: diarrhea in about one third of patients; cramp dose is 400 mg/day",
                indicator="info", detail=render_detail(why=why, guideline=GUIDELINE))


@rule(
    id="quinidine-caution",
    title="Quinidine dose and diarrhea",
    hooks=("order-select", "order-sign"),
    indicator="warning",
    reads={},
    source=Source("000", sections=("Treatment",)),
)
def evaluate(call: Call) -> list[Card]:
    """One card per quinidine order: info, or a warning above 400 mg/day."""
    uses = [medication_of(o, call.record) for o in call.orders]
    return [_card(u) for u in uses if u is not None and u.has("quinidine")]
