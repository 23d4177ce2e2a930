"""Orders seen: whether an order is already addressed, and what a draft order is for.

"Already addressed" (catalogue section 1): an order exists when the record holds, coded
in the value set and dated inside the window,

* a ``ServiceRequest`` with status ``active`` or ``completed`` (not ``doNotPerform``),
  dated by ``authoredOn``, else ``occurrenceDateTime`` / ``occurrencePeriod.start``;
* a ``Procedure`` with status ``completed``, ``in-progress`` or ``preparation``, dated by
  ``performedDateTime``, else ``performedPeriod.end`` / ``.start``;
* a ``DiagnosticReport`` with status ``final``, ``amended``, ``corrected`` or
  ``preliminary``, dated by ``effectiveDateTime``, else ``effectivePeriod.end`` /
  ``.start``, else ``issued``.

"Inside the window" means not older than ``window_days``; a future date counts (a study
already scheduled is already ordered). An *open* item without any date (an active
ServiceRequest, an in-progress or preparation Procedure) counts too: it is current by
its status. A completed item or a report without a date does not (when is unknown).
Resources are read tolerantly (``record.read``): a faulty element is repaired or
dropped, the resource still counts.

Draft orders (``context.draftOrders``) are read raw: ``order_codes`` and
``is_order_for`` look at ``ServiceRequest.code`` / ``Procedure.code`` or the medication
concept (``medicationCodeableConcept`` or a contained Medication's code).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ...fhir.record import CONCEPT_FIELDS, Record
from ...fhir.terminology import normalize_code, valueset
from .elements import codings_of, first_time, items, one, readable

__all__ = ["already_done", "order_unsure", "order_status_in_doubt", "order_codes", "order_concept", "is_order_for",
           "unnamed_orders"]

_STATUSES = {
    "ServiceRequest": {"active", "completed"},
    "Procedure": {"completed", "in-progress", "preparation"},
    "DiagnosticReport": {"final", "amended", "corrected", "preliminary"},
}
_OPEN = {"active", "in-progress", "preparation"}
# Every status code of each type: a status outside these (or none, or unreadable) is unknown.
_KNOWN = {
    "ServiceRequest": {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"},
    "Procedure": {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error",
                  "unknown"},
    "DiagnosticReport": {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                         "cancelled", "entered-in-error", "unknown"},
}
_DATES = {
    "ServiceRequest": ("authoredOn", "occurrenceDateTime", "occurrencePeriod.start"),
    "Procedure": ("performedDateTime", "performedPeriod.end", "performedPeriod.start"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.end", "effectivePeriod.start", "issued"),
}


def already_done(record: Record, valueset_name: str, now: datetime, window_days: int) -> dict | None:
    """The newest ServiceRequest / Procedure / DiagnosticReport that already addresses the
    value set's order inside the window (raw resource), or None."""
    vs = valueset(valueset_name)
    since = now - timedelta(days=window_days)
    best: tuple[datetime, dict] | None = None
    for rtype, statuses in _STATUSES.items():
        for found in record.coded(rtype, vs):
            if one(found.get("status")) not in statuses:
                continue
            raw = readable(record, found)
            if raw is None:
                continue
            status = one(raw.get("status"))
            if status not in statuses or raw.get("doNotPerform") is True:
                continue
            when = first_time(raw, *_DATES[rtype])
            if when is None and status in _OPEN:
                when = now
            if when is None or when < since:
                continue
            if best is None or when > best[0]:
                best = (when, raw)
    return best[1] if best else None


def order_status_in_doubt(raw: dict) -> bool:
    """Whether a ServiceRequest / Procedure / DiagnosticReport's status, as sent, cannot be read:
    missing, ``unknown``, or not a status code of its type (a list of one is read as its item)."""
    rtype = one(raw.get("resourceType")) or ""
    status = one(raw.get("status"))
    return status is None or status == "unknown" or status not in _KNOWN.get(rtype, ())


def order_unsure(record: Record, valueset_name: str, now: datetime, window_days: int) -> bool:
    """Whether an order of the value set may be on file in the window although ``already_done`` could
    not count it: its status is missing, ``unknown`` or not a code of its type, or it has a counting
    status but no readable date (a completed EMG of unknown date may be recent). A rule then does
    not say "No X on file" (``clinical.absence``)."""
    def compute() -> bool:
        vs = valueset(valueset_name)
        since = now - timedelta(days=window_days)
        for rtype, statuses in _STATUSES.items():
            for raw in record.coded(rtype, vs):
                status = one(raw.get("status"))
                when = first_time(raw, *_DATES[rtype])
                if when is not None and when < since:
                    continue
                if order_status_in_doubt(raw):
                    return True
                if status in statuses and when is None and status not in _OPEN:
                    return True
        return False

    return record.memo(("order-unsure", valueset_name, now, window_days), compute)


def order_concept(order: dict) -> dict | None:
    """The CodeableConcept saying what an order is for (see module doc), or None."""
    rtype = one(order.get("resourceType"))
    concept = order.get(CONCEPT_FIELDS.get(rtype or "", "code"))
    if isinstance(concept, dict):
        return concept
    ref = order.get("medicationReference")
    target = one(ref.get("reference")) if isinstance(ref, dict) else None
    if target is not None and target.startswith("#"):
        for contained in items(order.get("contained")):
            if isinstance(contained, dict) and contained.get("id") == target[1:]:
                code = contained.get("code")
                return code if isinstance(code, dict) else None
    return None


def order_codes(order: dict) -> list[tuple[str, str]]:
    """``(system, code)`` pairs of an order's concept (ICD-10-CM without the dot)."""
    out = []
    for coding in codings_of(order_concept(order)):
        system, code = one(coding.get("system")), one(coding.get("code"))
        if system is not None and code is not None:
            out.append((system, normalize_code(system, code)))
    return out


def is_order_for(order: dict, valueset_name: str) -> bool:
    """Whether a (draft) order's concept is in the value set (by code, else by name)."""
    return valueset(valueset_name).matches(order_concept(order))


def unnamed_orders(orders: list[dict], record: Record | None = None) -> list[dict]:
    """The (draft) orders whose concept cannot be read at all, or (with the ``record`` that read them)
    arrived as a bare string: what they order is not known for sure, so no rule may say that none of
    them is for X."""
    out = []
    for order in orders:
        concept = order_concept(order)
        if record is not None and record.code_was_text(order):
            out.append(order)
        elif concept is None and order.get("medicationReference") is None:
            out.append(order)
        elif concept is not None and not any(
                one(c.get("code")) or one(c.get("display")) for c in codings_of(concept)) and not one(
                concept.get("text")):
            out.append(order)
    return out
