"""Electrolytes: the recent potassium, magnesium and calcium results and the lab orders
that the cramp and twitching rules share (electrolyte-check, electrolyte-abnormal,
cirrhosis-cramps, hamstring-twitch-care), plus the one-line fact formats their cards use.

Why shared: these rules must read "recent" and "low" the same way (catalogue section 1,
through ``clinical.labs``) and suggest the very same BMP and magnesium orders, so that
the engine recognises them as one order across cards.
"""

from __future__ import annotations

from datetime import datetime

from .card import Action, Suggestion
from .clinical import Finding, LabResult, already_done, latest_calcium, latest_lab
from .clinical.elements import codes_of, items, number, one
from .clinical.labs import lab_absent, range_low_text
from .orders import describe, service_request
from .registry import Call

__all__ = ["READS", "NAMES", "PANEL_OF", "recent_electrolytes", "result_line", "finding_line", "bmp_order",
           "magnesium_order", "order_suggestions", "repeat_window_days", "missing_labs", "unreadable_labs",
           "labs_complete"]

# The data a rule about twitching or cramps and their electrolytes reads (``@rule(reads=...)``).
_ORDERS = ("bmp_panel", "magnesium_order")
READS = {
    "conditions": ("fasciculation", "cramp"),
    "observations": ("fasciculation", "cramp", "potassium_lab", "magnesium_lab", "calcium_total_lab",
                     "calcium_ionized_lab", "albumin_lab"),
    "serviceRequests": _ORDERS,
    "procedures": _ORDERS,
    "diagnosticReports": _ORDERS,
    "labReports": (),  # every lab report: a panel with a local code holds its results too
}

# Display names of the labs of ``clinical.LABS`` used in card text.
NAMES = {"potassium": "Potassium", "magnesium": "Magnesium", "calcium": "Calcium",
         "calcium_ionized": "Ionized calcium"}

# Which order re-measures each lab: the BMP carries potassium and (total) calcium.
# Ionized calcium is rechecked with the BMP too (our choice: the guideline asks for a
# "basic metabolic panel including magnesium, potassium, and calcium").
PANEL_OF = {"potassium": "bmp_panel", "calcium": "bmp_panel", "calcium_ionized": "bmp_panel",
            "magnesium": "magnesium_order"}


def recent_electrolytes(call: Call) -> dict[str, LabResult | None]:
    """The latest recent result per electrolyte (``potassium``, ``magnesium``, ``calcium``).

    ``calcium`` is the newest of total calcium (albumin-corrected when an albumin lies
    within ``albumin_pair_days``) and ionized calcium; None means no recent result.
    """
    s = call.settings
    return {
        "potassium": latest_lab(call.record, "potassium", call.now, s.lab_recent_days, s.albumin_pair_days),
        "magnesium": latest_lab(call.record, "magnesium", call.now, s.lab_recent_days, s.albumin_pair_days),
        "calcium": latest_calcium(call.record, call.now, s.lab_recent_days, s.albumin_pair_days),
    }


def labs_complete(call: Call) -> bool:
    """Whether the lab results arrived whole: only then may a card say a lab has no result."""
    return call.record.complete("Observation", "DiagnosticReport")


def missing_labs(call: Call, recent: dict[str, LabResult | None]) -> list[str]:
    """The labs with no recent result, when that can be said (``clinical.lab_absent``: the results
    arrived whole and readable, none of the lab in doubt); a lab that may have one is not named."""
    days = call.settings.lab_recent_days
    return [lab for lab, r in recent.items() if r is None and lab_absent(call.record, lab, call.now, days)]


def unreadable_labs(recent: dict[str, LabResult | None]) -> list[LabResult]:
    """The latest recent results whose value could not be read or told low or normal."""
    return [r for r in recent.values() if r is not None and not r.readable]


def _range_low(result: LabResult) -> str | None:
    """The normal range's low limit as reported (``3.5 mmol/L``), for the card text."""
    for rng in items(result.resource.get("referenceRange")):
        low = rng.get("low") if isinstance(rng, dict) else None
        value = number(low.get("value")) if isinstance(low, dict) else None
        normal = isinstance(rng, dict) and (rng.get("type") is None or "normal" in codes_of(rng.get("type")))
        if isinstance(low, dict) and value is not None and normal:
            unit = one(low.get("unit")) or one(low.get("code")) or result.unit or ""
            return f"{value:g} {unit}".strip()
        if isinstance(rng, dict) and normal and low is None and rng.get("high") is None:
            text = one(rng.get("text"))
            if text is not None and range_low_text(text) is not None:
                return text.strip()
    return None


def result_line(result: LabResult) -> str:
    """``Potassium 3.1 mmol/L on 2026-11-18 (below the reference range 3.5 mmol/L)``; a result that
    cannot be read: ``A potassium result of 2026-11-18 (“<5 mmol/L”) could not be interpreted``."""
    if not result.readable:
        what = "could not be read" if result.value is None else "could not be interpreted as low or normal"
        return f"A {NAMES[result.lab].lower()} result of {result.effective:%Y-%m-%d} ({result.shown()}) {what}"
    text = f"{NAMES[result.lab]} {result.shown()} on {result.effective:%Y-%m-%d}"
    if result.low and result.why_low:
        why = result.why_low
        limit = _range_low(result) if why == "below the reference range" else None
        text += f" ({why} {limit})" if limit else f" ({why})"
    return text


def finding_line(finding: Finding) -> str:
    """``Muscle cramp (Condition, since 2026-09-22)`` for the "why" list."""
    since = f", since {finding.onset:%Y-%m-%d}" if finding.onset else ""
    return f"{finding.display} ({finding.kind}{since})"


def bmp_order(call: Call, reasons: list[Finding]) -> dict:
    return service_request(call.patient_id, "bmp_panel", text="Basic metabolic panel", category="laboratory",
                           reasons=reasons)


def magnesium_order(call: Call, reasons: list[Finding]) -> dict:
    return service_request(call.patient_id, "magnesium_order", text="Magnesium, serum or plasma",
                           category="laboratory", reasons=reasons)


def repeat_window_days(call: Call, since: datetime) -> int:
    """The ``already_done`` window that counts only orders from the day after ``since`` on.

    A repeat must follow the result it repeats; the panel that produced the result
    (ordered or reported the same day) must not count as its repeat.
    """
    return max(int((call.now - since).total_seconds() // 86400) - 1, 0)


def order_suggestions(call: Call, reasons: list[Finding], panels: dict[str, int]) -> list[Suggestion]:
    """One suggestion per lab order (``bmp_panel`` / ``magnesium_order`` -> its window in
    days), leaving out an order that ``already_done`` finds inside its window.

    One order per suggestion, so that when a more urgent card offers the same order the
    engine drops only that suggestion here.
    """
    builders = {"bmp_panel": bmp_order, "magnesium_order": magnesium_order}
    out = []
    for name in ("bmp_panel", "magnesium_order"):
        if name not in panels or already_done(call.record, name, call.now, panels[name]):
            continue
        resource = builders[name](call, reasons)
        label = f"Order {describe(resource)[:1].lower()}{describe(resource)[1:]}"
        out.append(Suggestion(label=label, actions=[Action("create", f"Order: {describe(resource)}", resource)]))
    return out
