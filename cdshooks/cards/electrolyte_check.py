"""electrolyte-check: twitching or cramps without recent potassium, magnesium and calcium results.

When it fires
    Fasciculation or muscle cramp is present **and** at least one of potassium,
    magnesium or calcium (total, albumin-corrected or not, or ionized) has no result in
    the recent window (``lab_recent_days``, default 90 days) **and** the
    ``hamstring-twitch-care`` card did not fire (it carries the same advice and order).

    It fires too when the latest recent result of one of them is there but could not be
    read or told low or normal (a value "garbage", NaN, or a "<5" potassium): it then says
    exactly that ("A potassium result of 2026-11-25 (“<5 mmol/L”) could not be
    interpreted as low or normal") and suggests the panel that measures it again.

Unknown is not absent
    The card says "No X result" only when the Observations and DiagnosticReports
    arrived whole (``Record.complete``). When they did not (a search cut off at the page
    cap, a page that failed), a lab without a result is not mentioned and not ordered:
    a careful clinician would not want a recheck suggested on data we did not see.

When it stays silent
    No present fasciculation or cramp; all three electrolytes have a recent readable
    result (whatever its value: a low one is ``electrolyte-abnormal``'s business); hamstring
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

from ._electrolytes import (
    NAMES,
    READS,
    finding_line,
    missing_labs,
    order_suggestions,
    recent_electrolytes,
    result_line,
    unreadable_labs,
)
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
    triggers=(("fasciculation", "cramp"),),
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
    recent = recent_electrolytes(call)
    missing = missing_labs(call, recent)
    unread = unreadable_labs(recent)
    recheck = missing + [r.lab for r in unread]
    if not recheck:
        return None
    window = call.settings.lab_recent_days
    panels: dict[str, int] = {}
    if "potassium" in recheck or "calcium" in recheck:
        panels["bmp_panel"] = window
    if "magnesium" in recheck:
        panels["magnesium_order"] = window
    done = [name for name, days in panels.items() if already_done(call.record, name, call.now, days)]
    panels = {name: days for name, days in panels.items() if name not in done}
    if not panels:
        return None
    suggestions = order_suggestions(call, symptoms, panels)
    names = _or([NAMES[lab].lower() for lab in missing]) if missing else ""
    why = [finding_line(f) for f in symptoms[:2]]
    if missing:
        why.append(f"No {names} result in the last {window} days.")
    why += [result_line(r) + "." for r in unread]
    why += [f"A {_ORDER_NAMES[name]} test is already ordered or resulted in that window." for name in done]
    wanted = " and ".join({"bmp_panel": "a BMP", "magnesium_order": "magnesium"}[name] for name in panels)
    detail = render_detail(why=why, guideline=[
        "Electrolyte imbalances (particularly magnesium, potassium, or calcium deficiency) can trigger "
        f"spontaneous muscle fasciculations ({CITE_003} — Common Benign Causes).",
        "Check a basic metabolic panel including magnesium, potassium, and calcium levels "
        f"({CITE_003} — Diagnostic Approach).",
    ])
    if missing:
        summary = f"Twitching or cramps with no recent {names} result: check {wanted}"
    else:
        unread_names = _or([NAMES[r.lab].lower() for r in unread])
        summary = f"Twitching or cramps, a recent {unread_names} result could not be read: check {wanted}"
    return Card(summary=summary, indicator="info", detail=detail, suggestions=suggestions)
