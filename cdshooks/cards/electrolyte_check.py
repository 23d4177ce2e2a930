"""electrolyte-check: twitching or cramps without recent potassium, magnesium and calcium results.

When it fires
    Fasciculation or muscle cramp is present **and** at least one of potassium,
    magnesium or calcium (total, albumin-corrected or not, or ionized) has no result in
    the recent window (``lab_recent_days``, default 90 days) **and** the
    ``hamstring-twitch-care`` card did not fire (it carries the same advice and order).

When it stays silent
    No present fasciculation or cramp; all three electrolytes have a recent result
    (whatever its value: a low one is ``electrolyte-abnormal``'s business); hamstring
    twitching care already fired; or every order the card would suggest is already
    ordered or done in the window (an active or completed ServiceRequest, a Procedure
    or a DiagnosticReport for it: then the whole advice is addressed).

What the card says and suggests (info)
    Check a basic metabolic panel and magnesium. It names the electrolytes without a
    recent result and suggests a lab ServiceRequest for the basic metabolic panel
    (LOINC 24321-2) and one for serum magnesium (LOINC 19123-9).

Guideline
    003, Common Benign Causes: "Electrolyte imbalances (particularly magnesium,
    potassium, or calcium deficiency) can trigger spontaneous muscle fasciculations";
    Diagnostic Approach: "Check basic metabolic panel including magnesium, potassium,
    and calcium levels."

Choices where the catalogue and guidelines are silent
    An order is suggested only for what lacks a recent result: the basic metabolic
    panel when potassium or calcium has none, magnesium when magnesium has none (a
    recent result of a test counts as that test done in the window). The window for
    "already ordered" is the recent-lab window.

What changed and why (clinical review)
    Twitching the record places only in the eyelid or face (``_twitch.face_only``:
    eyelid or facial myokymia) no longer starts the work-up on its own: the guideline
    is silent on eyelid twitching, and its electrolyte advice is about fasciculations
    "throughout the body, including the hamstrings" (003). A cramp, or twitching
    anywhere else (or unplaced), still fires the card. Our choice for the sister rule:
    ``electrolyte-abnormal`` still fires on a recent *low* value with eyelid twitching,
    because the low value itself needs correcting whatever the twitching is.
"""

from __future__ import annotations

from ._electrolytes import NAMES, READS, finding_line, order_suggestions, recent_electrolytes
from ._twitch import body_twitching
from .card import Card, render_detail
from .clinical import already_done, findings
from .registry import Call, Source, rule

CITE_003 = "Hamstring Muscle Twitching: Causes and Clinical Approach"
_ORDER_NAMES = {"bmp_panel": "basic metabolic panel", "magnesium_order": "magnesium"}


def _or(words: list[str]) -> str:
    """``potassium, magnesium or calcium``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


@rule(
    id="electrolyte-check",
    title="Check electrolytes in twitching or cramps",
    hooks=("patient-view",),
    indicator="info",
    reads=READS,
    source=Source("003", sections=("Common Benign Causes", "Diagnostic Approach")),
    after=("hamstring-twitch-care",),
)
def evaluate(call: Call) -> Card | None:
    """An info card with the BMP and magnesium orders when an electrolyte has no recent result."""
    if call.fired("hamstring-twitch-care"):
        return None
    twitch, _face = body_twitching(call.record)
    symptoms = sorted(twitch + findings(call.record, "cramp"), key=lambda f: (f.onset is None, f.onset or call.now))
    if not symptoms:
        return None
    missing = [lab for lab, result in recent_electrolytes(call).items() if result is None]
    if not missing:
        return None
    window = call.settings.lab_recent_days
    panels: dict[str, int] = {}
    if "potassium" in missing or "calcium" in missing:
        panels["bmp_panel"] = window
    if "magnesium" in missing:
        panels["magnesium_order"] = window
    done = [name for name, days in panels.items() if already_done(call.record, name, call.now, days)]
    panels = {name: days for name, days in panels.items() if name not in done}
    if not panels:
        return None
    suggestions = order_suggestions(call, symptoms, panels)
    names = _or([NAMES[lab].lower() for lab in missing])
    why = [finding_line(f) for f in symptoms[:2]]
    why.append(f"No {names} result in the last {window} days.")
    why += [f"A {_ORDER_NAMES[name]} test is already ordered or resulted in that window." for name in done]
    wanted = " and ".join({"bmp_panel": "a BMP", "magnesium_order": "magnesium"}[name] for name in panels)
    detail = render_detail(why=why, guideline=[
        "Electrolyte imbalances (particularly magnesium, potassium, or calcium deficiency) can trigger "
        f"spontaneous muscle fasciculations ({CITE_003} — Common Benign Causes).",
        "Check a basic metabolic panel including magnesium, potassium, and calcium levels "
        f"({CITE_003} — Diagnostic Approach).",
    ])
    return Card(summary=f"Twitching or cramps with no recent {names} result: check {wanted}",
                indicator="info", detail=detail, suggestions=suggestions)
