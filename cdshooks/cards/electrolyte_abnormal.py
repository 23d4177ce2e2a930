"""electrolyte-abnormal: twitching or cramps with a low recent potassium, magnesium or calcium.

When it fires
    Fasciculation or muscle cramp is present (a Condition or an Observation, see
    catalogue section 1) **and** the latest recent result (``lab_recent_days``, default
    90 days) of potassium, magnesium or calcium is low. Calcium is the newest of total
    calcium, corrected for albumin when an albumin lies within ``albumin_pair_days`` of
    it, and ionized calcium. "Low" is decided by ``clinical.labs``: the result's
    reference range first, then its interpretation flag, then the catalogue's default
    limit after unit conversion; a value in a unit we cannot convert is low only through
    its reference range or flag, never by guessing.

When it stays silent
    No present fasciculation or cramp (refuted, entered-in-error, resolved or negated
    records do not count); no recent result; or every latest result is not low (an
    older low value followed by a normal one is not low).

What the card says and suggests (warning)
    It names each low value with its date and why it counts as low, and asks to
    correct the abnormality. It suggests a repeat only for a low value older than
    ``repeat_lab_after_days`` (default 7): the basic metabolic panel for potassium or
    calcium, serum magnesium for magnesium, each unless such an order or result already
    exists from the day after the low value on (the panel that produced the low value
    is not its repeat). A low value younger than that is assumed to be in hand.

Guideline
    000, Muscle Cramps in Cirrhosis: cramps "may respond to correction of electrolyte
    abnormalities (hypokalemia, hypomagnesemia)"; Treatment: "Correct electrolyte
    abnormalities (potassium, magnesium)". 003, Common Benign Causes: "Electrolyte
    imbalances (particularly magnesium, potassium, or calcium deficiency) can trigger
    spontaneous muscle fasciculations"; Diagnostic Approach: "electrolyte repletion if
    deficient".

Choices where the catalogue and guidelines are silent
    The card gives no repletion dose (neither guideline does). Ionized calcium is
    rechecked with the basic metabolic panel (the panel 003 asks for). When several
    stale low values need the same order, the repeat must postdate the newest of them.

Unknown is not absent
    A result whose value could not be read, or that cannot be told low or normal (a "<5"
    potassium), is never low: the card stays silent about it (``electrolyte-check`` states it).
    "<1.5 mg/dL" magnesium is low (its bound is below the limit).

What changed and why (clinical review)
    Results in every common LOINC code are read (ionized calcium in mg/dL, 38230-9 and
    17863-2, divided by 4.008; magnesium in mmol/L, 2593-2, times 2.431; calcium in meq/L),
    so a low value is no longer missed for its code or unit. Eyelid or facial twitching
    still fires this card (our choice, unlike ``electrolyte-check``): a recent low value
    needs correcting whatever the twitching is.
"""

from __future__ import annotations

from ._electrolytes import (
    NAMES,
    PANEL_OF,
    READS,
    finding_line,
    order_suggestions,
    recent_electrolytes,
    repeat_window_days,
    result_line,
)
from .card import Card, render_detail
from .clinical import LabResult, findings
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"
CITE_003 = "Hamstring Muscle Twitching: Causes and Clinical Approach"


def _repeats(call: Call, low: list[LabResult]) -> dict[str, int]:
    """Order value set -> window, for the low values old enough to repeat."""
    stale: dict[str, LabResult] = {}
    for result in low:
        if (call.now - result.effective).total_seconds() > call.settings.repeat_lab_after_days * 86400:
            panel = PANEL_OF[result.lab]
            if panel not in stale or result.effective > stale[panel].effective:
                stale[panel] = result
    return {panel: repeat_window_days(call, result.effective) for panel, result in stale.items()}


@rule(
    id="electrolyte-abnormal",
    triggers=(("fasciculation", "cramp"),),
    title="Low potassium, magnesium or calcium with twitching or cramps",
    hooks=("patient-view",),
    indicator="warning",
    reads=READS,
    source=Source(("000", "003"), sections=("000: Muscle Cramps in Cirrhosis", "000: Treatment",
                                            "003: Common Benign Causes", "003: Diagnostic Approach")),
)
def evaluate(call: Call) -> Card | None:
    """A warning naming each low recent electrolyte, with a repeat panel for stale values."""
    symptoms = findings(call.record, "fasciculation", "cramp")
    if not symptoms:
        return None
    low = [r for r in recent_electrolytes(call).values() if r is not None and r.low]
    if not low:
        return None
    names = " and ".join(dict.fromkeys(NAMES[r.lab].lower() for r in low))
    why = [finding_line(f) for f in symptoms[:2]] + [result_line(r) for r in low]
    repeats = _repeats(call, low)
    suggestions = order_suggestions(call, symptoms, repeats)
    if repeats and not suggestions:
        why.append("A repeat of the older low value is already ordered or resulted.")
    detail = render_detail(why=why, guideline=[
        "Electrolyte imbalances (particularly magnesium, potassium, or calcium deficiency) can trigger "
        f"spontaneous muscle fasciculations; replete electrolytes if deficient ({CITE_003} — Common Benign "
        "Causes; Diagnostic Approach).",
        "Muscle cramps may respond to correction of electrolyte abnormalities (hypokalemia, hypomagnesemia) "
        f"({CITE_000} — Muscle Cramps in Cirrhosis; Treatment).",
    ])
    return Card(summary=f"Low {names} with twitching or cramps: correct the electrolyte abnormality",
                indicator="warning", detail=detail, suggestions=suggestions)
