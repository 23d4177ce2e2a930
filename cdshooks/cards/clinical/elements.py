"""Elements: small readers for FHIR data types shared by the clinical modules.

They work on JSON as read by ``Record.read`` (repaired where the intent is plain) and
are total: a missing or wrongly typed element reads as "nothing there" (no code, no
text, no number, no time), never as an exception. A one-item list where one value
belongs reads as that value, and one object where a list belongs as a list of one,
the same repairs ``Record.read`` makes.
"""

from __future__ import annotations

import math
from datetime import datetime

from ...fhir.record import Record
from ...fhir.terminology import codings, items, one
from .dates import parse_when

__all__ = ["ResourceFacts", "valid", "readable", "reference_of", "codings_of", "codes_of", "number", "label_of",
           "first_time", "words_of", "one", "items", "text_of", "absence", "FINDING_TYPES", "ORDER_TYPES"]

# The resource types a finding (``findings``) and an order on file (``already_done``) are read from.
FINDING_TYPES = ("Condition", "Observation")
ORDER_TYPES = ("ServiceRequest", "Procedure", "DiagnosticReport")


def absence(record: Record, types: tuple[str, ...], claim: str, what: str, unsure: bool = False) -> str:
    """``claim`` ("No EMG ... on file in the last 365 days") when every resource of ``types`` arrived
    whole and readable (``Record.complete``) and the caller is not ``unsure`` (e.g. ``order_unsure``:
    an order of unknown status or date); otherwise the sentence that ``what`` ("an EMG or nerve
    conduction study is on file") could not be checked. Unknown is not absent."""
    if record.complete(*types) and not unsure:
        return claim
    return f"Whether {what} could not be checked: the record received was incomplete or partly unreadable"


def readable(record: Record, resource: object) -> dict | None:
    """The resource as rules read it (``Record.read``: faulty elements repaired or dropped), or
    None for something that is not a resource at all."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return None
    return record.read(resource)


def valid(record: Record, resource: object) -> bool:
    """Whether the resource can be read at all. A resource is never discarded for a faulty
    element: its problems are repaired or dropped and counted by the record."""
    return readable(record, resource) is not None


def text_of(value: object) -> str | None:
    """A non-blank string element (tolerantly read, see ``one``), stripped; else None."""
    text = one(value)
    return text.strip() if text is not None and text.strip() else None


def reference_of(resource: dict) -> str | None:
    """``Type/id`` for a resource with an id, else its Bundle ``fullUrl``, else None."""
    rtype, rid = one(resource.get("resourceType")), one(resource.get("id"))
    if isinstance(rtype, str) and isinstance(rid, str) and rid:
        return f"{rtype}/{rid}"
    full_url = resource.get("_fullUrl")
    return full_url if isinstance(full_url, str) else None


class ResourceFacts:
    """What a fact about one resource (``self.resource``) says of that resource: its type and reference."""

    resource: dict

    @property
    def kind(self) -> str:
        return str(self.resource.get("resourceType"))

    @property
    def reference(self) -> str | None:
        """``Type/<id>`` (or fullUrl), for ``reasonReference``."""
        return reference_of(self.resource)


def codings_of(concept: object) -> list[dict]:
    """The Coding objects of a CodeableConcept (a lone Coding object counts as a list of one)."""
    return codings(concept)


def codes_of(concept: object) -> set[str]:
    """The bare codes of a CodeableConcept (any system), as sent."""
    return {code for c in codings_of(concept) if (code := one(c.get("code"))) is not None}


def words_of(concept: object) -> list[str]:
    """The human texts of a CodeableConcept: its ``text`` and every coding ``display``."""
    if not isinstance(concept, dict):
        return []
    texts = [text_of(concept.get("text"))] + [text_of(c.get("display")) for c in codings_of(concept)]
    return [t for t in texts if t is not None]


def label_of(concept: object, fallback: str = "") -> str:
    """A short human label: ``text``, else the first coding display, else the first code."""
    if isinstance(concept, dict):
        text = text_of(concept.get("text"))
        if text is not None:
            return text
        for coding in codings_of(concept):
            display = text_of(coding.get("display"))
            if display is not None:
                return display
        for coding in codings_of(concept):
            code = text_of(coding.get("code"))
            if code is not None:
                return code
    return fallback


def number(value: object) -> float | None:
    """A finite JSON number (or numeric string) as float; None for booleans, NaN, infinities,
    numbers too large for a float and anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def first_time(resource: dict, *paths: str) -> datetime | None:
    """The first readable time among dotted ``paths`` (e.g. ``"effectivePeriod.end"``)."""
    for path in paths:
        parts = _PARTS.get(path)
        if parts is None:
            parts = _PARTS[path] = tuple(path.split("."))
        value: object = resource
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        when = parse_when(value)
        if when is not None:
            return when
    return None


_PARTS: dict[str, tuple[str, ...]] = {}  # a dotted path's names (the paths are the rules' own, a few dozen)
