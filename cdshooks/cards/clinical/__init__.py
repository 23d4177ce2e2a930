"""Clinical: the catalogue's shared definitions (RULES.md section 1), the one API every rule uses.

All functions read the raw resources of a ``Record`` (``record.of_type`` /
``record.coded`` / ``record.resolve``) and use each resource as ``record.read(raw)``
returns it (``elements.readable``): read tolerantly, faulty elements repaired or dropped,
never the resource. Every accessor is total: a wrong type reads as "nothing there", never
an exception. Times are aware UTC datetimes (``dates``). Value set and
ingredient names are those of ``cdshooks/valuesets/``; an unknown name raises KeyError.

Dates (``dates``)
    ``parse_when(value)`` FHIR date/dateTime/instant -> UTC datetime or None (partial
    dates: start of the period); ``within(when, now, days)``.
Findings (``findings``)
    ``findings(record, *valueset_names) -> list[Finding]`` (present Conditions and
    Observations, earliest onset first); ``onset(found)``; ``in_thigh(finding, record)``,
    ``in_lower_limb(finding, record)``; ``findings_in_doubt(record, *valueset_names)``
    (coded in the sets, status unreadable: never say the finding is absent). ``Finding``:
    resource, valueset, coding, display, onset, body_sites, reference, kind.
Medications (``medications``)
    ``active_medications(record) -> list[MedUse]``; ``using(meds, ingredient_or_class)``;
    ``medication_of(order, record) -> MedUse | None`` (draft orders, any status);
    ``daily_dose_mg(resource, product)``; ``dose_unreadable(resource, product)`` (why it is None);
    ``ingredient_names(name)``. ``MedUse``:
    resource, concept, medication, ingredients, product, label, started, changed,
    daily_mg, kind, reference, ``has(name)``.
Labs (``labs``)
    ``latest_lab(record, lab, now, window_days) -> LabResult | None`` for ``lab`` in
    ``LABS`` (potassium, magnesium, calcium, calcium_ionized, albumin);
    ``latest_calcium`` / ``calcium_low(record, now, window_days)``; ``lgi1_results(record)``
    (newest first) and ``lgi1_positive(raw)``. ``LabResult``: resource, lab, value, unit,
    value_default, default_unit, effective, low, why_low, albumin, corrected, reference,
    comparator, judged, ``readable`` (False: a result that could not be read or told low
    or normal; never "no result"), ``shown()``. ``Lgi1Result``: resource, effective, positive, reference, ``shown()``.
Unknown is not absent (``elements``)
    ``absence(record, types, claim, what)``: the claim "No X on file" only when every
    resource of ``types`` (``FINDING_TYPES``, ``ORDER_TYPES``) arrived whole and
    readable, else "Whether <what> could not be checked: ...".
Orders seen (``orders_seen``)
    ``already_done(record, valueset_name, now, window_days) -> dict | None``;
    ``order_codes(order)``, ``order_concept(order)``, ``is_order_for(order, valueset_name)``;
    ``order_status_in_doubt(raw)`` (a status that is missing, ``unknown`` or not a code of its type).

Suggested orders are built by ``cdshooks.orders`` (``service_request``,
``medication_request``, ``order_key``, ``describe``).

Typical rule code::

    twitch = findings(call.record, "fasciculation")
    weak = findings(call.record, "muscle_weakness", "muscle_atrophy")
    k = latest_lab(call.record, "potassium", call.now, call.settings.lab_recent_days)
    if k is not None and k.low:
        why.append(f"Potassium {k.shown()} on {k.effective:%Y-%m-%d} ({k.why_low})")
    if not already_done(call.record, "emg_ncs", call.now, call.settings.study_window_days): ...
"""

from .dates import parse_when, within
from .elements import FINDING_TYPES, ORDER_TYPES, absence
from .findings import Finding, findings, findings_in_doubt, in_lower_limb, in_thigh, onset
from .labs import (
    LABS,
    LabResult,
    Lgi1Result,
    calcium_low,
    lab_absent,
    latest_calcium,
    latest_lab,
    lgi1_positive,
    lgi1_results,
)
from .medications import (
    MedUse,
    active_medications,
    daily_dose_mg,
    dose_unreadable,
    ingredient_names,
    medication_of,
    using,
)
from .orders_seen import (
    already_done,
    is_order_for,
    order_codes,
    order_concept,
    order_status_in_doubt,
    order_unsure,
    unnamed_orders,
)

__all__ = [
    "parse_when", "within", "absence", "FINDING_TYPES", "ORDER_TYPES",
    "Finding", "findings", "findings_in_doubt", "onset", "in_thigh", "in_lower_limb",
    "MedUse", "active_medications", "using", "medication_of", "daily_dose_mg", "dose_unreadable", "ingredient_names",
    "LABS", "LabResult", "Lgi1Result", "latest_lab", "lab_absent", "latest_calcium", "calcium_low", "lgi1_results",
    "lgi1_positive",
    "already_done", "order_unsure", "order_status_in_doubt", "unnamed_orders", "order_codes", "order_concept",
    "is_order_for",
]
