"""Elements: small readers for FHIR data types shared by the clinical modules.

They work on raw JSON (already validated through ``Record.model``), tolerate missing
or oddly typed elements, and never raise.
"""

from __future__ import annotations

from datetime import datetime

from ...fhir.record import Record
from .dates import parse_when

__all__ = ["ResourceFacts", "valid", "reference_of", "codings_of", "codes_of", "number", "label_of", "first_time",
           "words_of"]


def valid(record: Record, resource: dict) -> bool:
    """Whether the resource is valid FHIR; an invalid one is treated as absent (and counted)."""
    return record.model(resource) is not None


def reference_of(resource: dict) -> str | None:
    """``Type/id`` for a resource with an id, else its Bundle ``fullUrl``, else None."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
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
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def codes_of(concept: object) -> set[str]:
    """The bare codes of a CodeableConcept (any system), as sent."""
    return {c["code"] for c in codings_of(concept) if isinstance(c.get("code"), str)}


def words_of(concept: object) -> list[str]:
    """The human texts of a CodeableConcept: its ``text`` and every coding ``display``."""
    if not isinstance(concept, dict):
        return []
    texts = [concept.get("text")] + [c.get("display") for c in codings_of(concept)]
    return [t for t in texts if isinstance(t, str) and t.strip()]


def label_of(concept: object, fallback: str = "") -> str:
    """A short human label: ``text``, else the first coding display, else the first code."""
    if isinstance(concept, dict):
        if isinstance(concept.get("text"), str) and concept["text"].strip():
            return concept["text"].strip()
        for coding in codings_of(concept):
            if isinstance(coding.get("display"), str) and coding["display"].strip():
                return coding["display"].strip()
        for coding in codings_of(concept):
            if isinstance(coding.get("code"), str):
                return coding["code"]
    return fallback


def number(value: object) -> float | None:
    """A JSON number (or numeric string) as float; None for booleans and anything else."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def first_time(resource: dict, *paths: str) -> datetime | None:
    """The first readable time among dotted ``paths`` (e.g. ``"effectivePeriod.end"``)."""
    for path in paths:
        value: object = resource
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        when = parse_when(value)
        if when is not None:
            return when
    return None
