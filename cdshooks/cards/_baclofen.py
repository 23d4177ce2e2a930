"""Baclofen: the guideline's cramp schedule and the orders that follow it.

000, Treatment (muscle cramps in cirrhosis): "Baclofen 10 mg/day, with weekly increases
of 10 mg/day up to 30 mg/day". Shared by cirrhosis-cramps (the first order),
baclofen-titration (the next step) and baclofen-dosing (a corrected draft), so that all
three write the same dose, schedule and ceiling.

Regimen (our choice, the guideline gives only daily totals): every dose is **whole
tablets** of a baclofen tablet in the product table (10 mg RxNorm 197391, 20 mg RxNorm
197392; 5 and 15 mg tablets are not verified, half tablets are not offered). The plan
keeps the patient's number of administrations a day when the total divides into whole
tablets, else tries the usual regimen (10 mg tablets once, twice or three times daily),
else once, twice or three times daily; at each step the drafted product comes first,
then the strongest tablet that divides the dose (so 20 mg/day as 10 mg twice daily is
written with the 10 mg tablet, never as half 20 mg tablets). A total with no whole-tablet
plan is not offered as an order. Orders are coded with the chosen product (the baclofen
ingredient has no verified RxNorm code), taken by mouth.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from ..fhir.terminology import Product, products_of
from .clinical import Finding, MedUse, daily_dose_mg
from .orders import medication_request
from .registry import Call

__all__ = ["START_MG", "STEP_MG", "MAX_MG", "TABLET_10MG", "current_daily_mg", "last_change", "times_per_day",
           "regimen", "tablet_plan", "tablets", "dosage_text", "suggested_order"]

START_MG = 10.0        # first dose, mg/day
STEP_MG = 10.0         # weekly increase, mg/day
MAX_MG = 30.0          # ceiling, mg/day
TABLET_10MG = "197391"  # RxNorm SCD baclofen 10 MG Oral Tablet (product table)

_TIMES = {1: "once daily", 2: "twice daily", 3: "three times daily", 4: "four times daily"}


def current_daily_mg(uses: list[MedUse]) -> float | None:
    """The patient's total daily baclofen dose, when every active baclofen use states the
    same computable dose (a request and a statement of one regimen); else None.

    Two uses with different doses may be one regimen recorded twice or two parts of a
    split regimen: we cannot tell, so we do not guess.
    """
    doses = {None if u.daily_mg is None else round(u.daily_mg, 3) for u in uses}
    if len(doses) != 1:
        return None
    return doses.pop()


def last_change(uses: list[MedUse]) -> datetime | None:
    """When the baclofen dose last started or changed (the latest of the uses), None if unknown."""
    dates = [u.changed for u in uses]
    if not dates or any(d is None for d in dates):
        return None
    return max(d for d in dates if d is not None)


def times_per_day(resource: dict) -> int | None:
    """Administrations a day of a MedicationRequest / MedicationStatement, when a whole number.

    Reuses the catalogue's dose arithmetic (``daily_dose_mg``) on the same timing with a
    1 mg dose, so the timing rules are read in one place.
    """
    key = "dosageInstruction" if resource.get("resourceType") == "MedicationRequest" else "dosage"
    dosages = [d for d in resource.get(key) or [] if isinstance(d, dict)]
    if not dosages:
        return None
    probe = {"resourceType": resource.get("resourceType"),
             key: [{**d, "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "mg"}}]} for d in dosages]}
    per_day = daily_dose_mg(probe)
    if per_day is None or not float(per_day).is_integer() or not 1 <= per_day <= 6:
        return None
    return int(per_day)


def _multiple(mg: float, of: float) -> bool:
    return mg > 0 and abs(mg / of - round(mg / of)) < 1e-9


def _halves(mg: float) -> bool:
    """Whole or half 10 mg tablets."""
    return _multiple(mg, 5)


def regimen(daily_mg: float, times_now: int | None = None) -> tuple[float, int]:
    """(mg per administration, administrations a day) for a daily total (see module doc)."""
    if times_now and _multiple(daily_mg / times_now, 10):
        return daily_mg / times_now, times_now
    if _multiple(daily_mg, 10) and daily_mg <= 40:
        return 10.0, int(round(daily_mg / 10))
    for n in ((times_now,) if times_now else ()) + (3, 2):
        if _halves(daily_mg / n):
            return daily_mg / n, n
    return daily_mg, 1


def tablets() -> list[Product]:
    """Baclofen oral tablets of the product table with a known strength, strongest first."""
    found = [p for p in products_of("baclofen") if p.strength_mg and p.unit_form == "tablet"]
    return sorted(found, key=lambda p: -(p.strength_mg or 0))


def tablet_plan(daily_mg: float, times_now: int | None = None,
                keep: Product | None = None) -> tuple[float, int, Product] | None:
    """(mg per dose, doses a day, product) giving ``daily_mg`` in whole tablets (module doc), or None."""
    available = tablets()
    ordered = ([keep] if keep is not None and keep in available else []) + [p for p in available if p != keep]
    times_options: list[int] = []
    for t in ((times_now,) if times_now else ()) + (regimen(daily_mg, times_now)[1], 1, 2, 3):
        if t and t not in times_options:
            times_options.append(t)
    for times in times_options:
        per = daily_mg / times
        for tablet in ordered:
            count = per / (tablet.strength_mg or 0)
            if _multiple(per, tablet.strength_mg or 0) and 1 <= round(count) <= 4:
                return per, times, tablet
    return None


def dosage_text(per_mg: float, times: int, daily_mg: float, tablet: Product | None = None,
                schedule: bool = True) -> str:
    """The dosage text; with ``schedule``, the guideline's weekly titration and ceiling."""
    when = _TIMES.get(times, f"{times} times daily")
    count = ""
    if tablet is not None and tablet.strength_mg:
        n = int(round(per_mg / tablet.strength_mg))
        count = f" ({n} x {tablet.strength_mg:g} mg tablet{'s' if n > 1 else ''})"
    text = f"{per_mg:g} mg{count} by mouth {when} ({daily_mg:g} mg/day)."
    if schedule:
        text += f" If cramps persist, raise by {STEP_MG:g} mg/day each week, to at most {MAX_MG:g} mg/day."
    return text


def suggested_order(call: Call, daily_mg: float, *, times_now: int | None = None,
                    reasons: Iterable[Finding] = (),
                    note: str | None = None) -> dict | None:
    """A draft baclofen MedicationRequest for ``daily_mg`` mg/day in whole tablets, capped by
    ``maxDosePerPeriod`` 30 mg/day; None when no whole-tablet plan exists."""
    plan = tablet_plan(daily_mg, times_now)
    if plan is None:
        return None
    per_mg, times, tablet = plan
    return medication_request(
        call.patient_id, "baclofen", dose_mg=per_mg, times_per_day=times,
        text=dosage_text(per_mg, times, daily_mg, tablet), max_mg_per_day=MAX_MG, reasons=reasons, note=note,
        product=tablet.rxnorm,
    )
