"""Record: one patient's FHIR data for one hook call, indexed raw and parsed lazily.

Prefetch values and fetched search results arrive as JSON. The record keeps the raw
resources (deduplicated by ``Type/id``), indexes them by type, by code and by the words
of their codes' displays, and builds a ``fhir.resources`` model only for a resource a
rule actually reads (``model()``). A resource that fails validation is dropped and
counted (``invalid``), never failing the call.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator

from . import fhir
from .terminology import ICD10CM, ValueSet, concept_words, normalize_code

__all__ = ["Record", "CONCEPT_FIELDS", "flatten"]

# The element that carries each resource type's main code.
CONCEPT_FIELDS = {
    "Condition": "code",
    "Observation": "code",
    "ServiceRequest": "code",
    "Procedure": "code",
    "DiagnosticReport": "code",
    "Medication": "code",
    "MedicationRequest": "medicationCodeableConcept",
    "MedicationStatement": "medicationCodeableConcept",
}


def flatten(value: object) -> Iterator[dict]:
    """Resources in a prefetch value: the resource itself, or a Bundle's entries (recursively)."""
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":
        for entry in value.get("entry") or []:
            if isinstance(entry, dict):
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    if entry.get("fullUrl") and "_fullUrl" not in resource:
                        resource = {**resource, "_fullUrl": entry["fullUrl"]}
                    yield from flatten(resource)
        return
    if isinstance(value.get("resourceType"), str):
        yield value


@dataclass
class _TypeIndex:
    resources: list[dict]
    by_code: dict[tuple[str, str], list[dict]]
    by_word: dict[str, list[dict]]


class Record:
    """The patient's data a hook call can see."""

    def __init__(self, patient_id: str, resources: Iterable[dict], now: datetime):
        self.patient_id = patient_id
        self.now = now
        self.invalid = 0
        self._by_type: dict[str, list[dict]] = defaultdict(list)
        self._by_ref: dict[str, dict] = {}
        self._models: dict[int, object] = {}
        self._indexes: dict[str, _TypeIndex] = {}
        self._memo: dict[object, object] = {}
        seen: set[str] = set()
        for res in resources:
            rtype = res.get("resourceType")
            rid = res.get("id")
            if not isinstance(rtype, str):
                self.invalid += 1
                continue
            if isinstance(rid, str):
                key = f"{rtype}/{rid}"
                if key in seen:
                    continue
                seen.add(key)
                self._by_ref[key] = res
            if isinstance(res.get("_fullUrl"), str):
                self._by_ref[res["_fullUrl"]] = res
            self._by_type[rtype].append(res)

    # -- raw access -----------------------------------------------------------------
    def of_type(self, *types: str) -> list[dict]:
        out: list[dict] = []
        for t in types:
            out.extend(self._by_type.get(t, ()))
        return out

    def count(self) -> int:
        return sum(len(v) for v in self._by_type.values())

    def resolve(self, reference: str | None, within: dict | None = None) -> dict | None:
        """A referenced resource: ``#id`` contained in ``within``, ``Type/id``, or a fullUrl."""
        if not reference or not isinstance(reference, str):
            return None
        if reference.startswith("#") and within is not None:
            for c in within.get("contained") or []:
                if isinstance(c, dict) and c.get("id") == reference[1:]:
                    return c
            return None
        if reference in self._by_ref:
            return self._by_ref[reference]
        # absolute URL to a server resource: match on the trailing Type/id
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 2:
            return self._by_ref.get(f"{parts[-2]}/{parts[-1]}")
        return None

    # -- lazy models ----------------------------------------------------------------
    def model(self, resource: dict):
        """The R4B model of a raw resource (built once), or None when it is not valid FHIR."""
        key = id(resource)
        if key not in self._models:
            clean = {k: v for k, v in resource.items() if k != "_fullUrl"} if "_fullUrl" in resource else resource
            parsed = fhir.parse(clean)
            if parsed is None:
                self.invalid += 1
            self._models[key] = parsed
        return self._models[key]

    def memo(self, key: object, compute):
        """``compute()`` once per call for ``key``: shared lookups several rules make."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- code lookups ---------------------------------------------------------------
    def _index(self, rtype: str) -> _TypeIndex:
        idx = self._indexes.get(rtype)
        if idx is not None:
            return idx
        field_name = CONCEPT_FIELDS.get(rtype, "code")
        by_code: dict[tuple[str, str], list[dict]] = defaultdict(list)
        by_word: dict[str, list[dict]] = defaultdict(list)
        resources = self._by_type.get(rtype, [])
        for res in resources:
            concept = res.get(field_name)
            if not isinstance(concept, dict):
                continue
            words: set[str] = set(concept_words(concept.get("text") if isinstance(concept.get("text"), str) else None))
            for coding in concept.get("coding") or []:
                if not isinstance(coding, dict):
                    continue
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    norm = normalize_code(system, code)
                    by_code[(system, norm)].append(res)
                    if system == ICD10CM:
                        for n in range(3, len(norm)):
                            by_code[(system, norm[:n])].append(res)
                if isinstance(coding.get("display"), str):
                    words.update(concept_words(coding["display"]))
            for w in words:
                by_word[w].append(res)
        idx = _TypeIndex(resources, by_code, by_word)
        self._indexes[rtype] = idx
        return idx

    def coded(self, rtype: str, vs: ValueSet, field_name: str | None = None) -> list[dict]:
        """Raw resources of ``rtype`` whose main code (or ``field_name``) is in ``vs``, in record order."""
        field_name = field_name or CONCEPT_FIELDS.get(rtype, "code")
        return list(self.memo(("coded", rtype, vs.name, field_name), lambda: self._coded(rtype, vs, field_name)))

    def _coded(self, rtype: str, vs: ValueSet, field_name: str) -> list[dict]:
        if field_name != CONCEPT_FIELDS.get(rtype, "code"):
            return [r for r in self._by_type.get(rtype, ()) if vs.matches(r.get(field_name))]
        idx = self._index(rtype)
        candidates: dict[int, dict] = {}
        for key in vs.exact | vs.prefixes:
            for res in idx.by_code.get(key, ()):
                candidates[id(res)] = res
        for word in vs.first_words:
            for res in idx.by_word.get(word, ()):
                candidates[id(res)] = res
        hits = {k for k, r in candidates.items() if vs.matches(r.get(field_name))}
        return [r for r in idx.resources if id(r) in hits]
