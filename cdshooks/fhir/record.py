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

from . import models as fhir
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
    """Resources in a value: the resource itself, or a Bundle's entries (nested Bundles too)."""
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":
        for entry in value.get("entry") or ():
            if isinstance(entry, dict):
                yield from flatten(entry.get("resource"))
    elif isinstance(value.get("resourceType"), str):
        yield value


def _names_other_patient(reference: str, patient_ref: str) -> bool:
    """Whether a reference (relative or absolute) plainly names a Patient other than ``patient_ref``."""
    parts = reference.rstrip("/").split("/")
    return len(parts) >= 2 and parts[-2] == "Patient" and f"Patient/{parts[-1]}" != patient_ref


def _signature(concept: dict) -> tuple:
    """What value set matching reads of a CodeableConcept, as a hashable key.

    Malformed codings (not objects, or values that are not strings) make the concept
    its own group: it is then matched on its own, never merged with another.
    """
    codings = concept.get("coding")
    try:
        if codings.__class__ is list and len(codings) == 1:  # the usual shape, kept fast
            c = codings[0]
            sig = (concept.get("text"), c.get("system"), c.get("code"), c.get("display"))
        else:
            sig = (concept.get("text"),) + tuple(
                (c.get("system"), c.get("code"), c.get("display")) for c in codings or ())
        hash(sig)
        return sig
    except (AttributeError, TypeError):
        return ("unhashable", id(concept))


@dataclass
class _TypeIndex:
    groups: dict[tuple, list[tuple[int, dict]]]   # concept signature -> (position, resource)
    concepts: dict[tuple, dict]                   # concept signature -> one such CodeableConcept
    by_code: dict[tuple[str, str], list[tuple]]   # (system, code or ICD prefix) -> signatures
    by_word: dict[str, list[tuple]]               # display / text word -> signatures


class Record:
    """The patient's data a hook call can see."""

    def __init__(self, patient_id: str, resources: Iterable[dict], now: datetime,
                 full_urls: dict[int, str] | None = None):
        self.patient_id = patient_id
        self.now = now
        self.invalid = 0
        self._other_patient: set[int] = set()
        self._patient_ref = f"Patient/{patient_id}"
        self._by_type: dict[str, list[dict]] = defaultdict(list)
        self._groups: dict[str, dict[tuple, list[tuple[int, dict]]]] = defaultdict(dict)
        self._full_urls: dict[str, dict] = {}
        self._refs: dict[str, dict] | None = None  # "Type/id" and fullUrl -> resource, built on first resolve()
        self._models: dict[int, object] = {}
        self._indexes: dict[str, _TypeIndex] = {}
        self._memo: dict[object, object] = {}
        self.ingest({"resourceType": "Bundle", "entry": [
            {"resource": res, "fullUrl": full_urls.get(id(res)) if full_urls else res.get("_fullUrl")}
            for res in resources]})

    @classmethod
    def from_prefetch(cls, patient_id: str, values: Iterable[object], now: datetime) -> "Record":
        """The record of a call's prefetch values (resources or searchset Bundles)."""
        record = cls(patient_id, (), now)
        for value in values:
            record.ingest(value)
        return record

    def ingest(self, value: object) -> None:
        """Add a prefetch value: a resource or a Bundle (entries of nested Bundles too).

        This loop runs once per resource of every call, so it stays flat. A resource about
        another patient is dropped (``other_patient``), one without a ``resourceType``
        counted as invalid, and a second copy of the same ``Type/id`` ignored.
        """
        if not isinstance(value, dict):
            return
        if value.get("resourceType") != "Bundle":
            if isinstance(value.get("resourceType"), str):
                self.ingest({"resourceType": "Bundle", "entry": [{"resource": value}]})
            return
        # This loop is the per-resource cost of every call: it stays flat. Each resource is
        # filed by type and by concept; checks that only matter for the resources rules read
        # (another patient's, a second copy) happen when they are read (``_usable``).
        by_type, all_groups, full_urls = self._by_type, self._groups, self._full_urls
        last_type: object = None
        same_type: list[dict] = []
        groups: dict[tuple, list[tuple[int, dict]]] = {}
        field_name = "code"
        for entry in value.get("entry") or ():
            if entry.__class__ is not dict:
                continue
            res = entry.get("resource")
            if res.__class__ is not dict:
                continue
            rtype = res.get("resourceType")
            if rtype != last_type:
                if rtype == "Bundle":
                    self.ingest(res)
                    continue
                if rtype.__class__ is not str:
                    self.invalid += 1
                    continue
                last_type, same_type, groups = rtype, by_type[rtype], all_groups[rtype]
                field_name = CONCEPT_FIELDS.get(rtype, "code")
            full_url = entry.get("fullUrl")
            if full_url.__class__ is str:
                if "id" not in res:
                    res = {**res, "_fullUrl": full_url}
                full_urls[full_url] = res
            concept = res.get(field_name)
            if concept.__class__ is dict:
                sig = _signature(concept)
                group = groups.get(sig)
                if group is None:
                    groups[sig] = group = []
                group.append((len(same_type), res))
            same_type.append(res)

    def _usable(self, rtype: str, resources: Iterable[dict]) -> list[dict]:
        """``resources`` (in record order) less those about another patient and second copies
        of the same ``Type/id``."""
        out, seen = [], set()
        for res in resources:
            subject = res.get("subject") or res.get("patient")
            if subject.__class__ is dict:
                ref = subject.get("reference")
                if ref.__class__ is str and ref != self._patient_ref and _names_other_patient(ref, self._patient_ref):
                    self._other_patient.add(id(res))
                    continue
            rid = res.get("id")
            if rid.__class__ is str:
                if rid in seen:
                    continue
                seen.add(rid)
            out.append(res)
        return out

    @property
    def other_patient(self) -> int:
        """How many resources read so far were about another patient (and were dropped)."""
        return len(self._other_patient)

    # -- raw access -----------------------------------------------------------------
    def of_type(self, *types: str) -> list[dict]:
        out: list[dict] = []
        for t in types:
            out.extend(self.memo(("of-type", t), lambda t=t: self._usable(t, self._by_type.get(t, ()))))
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
        refs = self._references()
        if reference in refs:
            return refs[reference]
        # absolute URL to a server resource: match on the trailing Type/id
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 2:
            return refs.get(f"{parts[-2]}/{parts[-1]}")
        return None

    def _references(self) -> dict[str, dict]:
        if self._refs is None:
            refs: dict[str, dict] = {}
            for rtype, resources in self._by_type.items():
                for res in resources:
                    if isinstance(res.get("id"), str):
                        refs.setdefault(f"{rtype}/{res['id']}", res)
            refs.update(self._full_urls)
            self._refs = refs
        return self._refs

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
        """Group the type's resources by concept (codings and text), then index the concepts.

        Records repeat the same few concepts thousands of times (every potassium result has
        the same code), so codes and display words are indexed, and value set membership is
        decided, once per distinct concept rather than once per resource.
        """
        idx = self._indexes.get(rtype)
        if idx is not None:
            return idx
        field_name = CONCEPT_FIELDS.get(rtype, "code")
        groups = self._groups.get(rtype, {})
        concepts = {sig: group[0][1][field_name] for sig, group in groups.items()}
        by_code: dict[tuple[str, str], list[tuple]] = defaultdict(list)
        by_word: dict[str, list[tuple]] = defaultdict(list)
        for sig, concept in concepts.items():
            text = concept.get("text")
            words: set[str] = set(concept_words(text if isinstance(text, str) else None))
            for coding in concept.get("coding") or ():
                if not isinstance(coding, dict):
                    continue
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    norm = normalize_code(system, code)
                    by_code[(system, norm)].append(sig)
                    if system == ICD10CM:
                        for n in range(3, len(norm)):
                            by_code[(system, norm[:n])].append(sig)
                if isinstance(coding.get("display"), str):
                    words.update(concept_words(coding["display"]))
            for w in words:
                by_word[w].append(sig)
        idx = _TypeIndex(groups, concepts, by_code, by_word)
        self._indexes[rtype] = idx
        return idx

    def coded(self, rtype: str, vs: ValueSet, field_name: str | None = None) -> list[dict]:
        """Raw resources of ``rtype`` whose main code (or ``field_name``) is in ``vs``, in record order."""
        field_name = field_name or CONCEPT_FIELDS.get(rtype, "code")
        return list(self.memo(("coded", rtype, vs.name, field_name), lambda: self._coded(rtype, vs, field_name)))

    def _coded(self, rtype: str, vs: ValueSet, field_name: str) -> list[dict]:
        if field_name != CONCEPT_FIELDS.get(rtype, "code"):
            return [r for r in self.of_type(rtype) if vs.matches(r.get(field_name))]
        idx = self._index(rtype)
        candidates: set[tuple] = set()
        for key in vs.exact | vs.prefixes:
            candidates.update(idx.by_code.get(key, ()))
        for word in vs.first_words:
            candidates.update(idx.by_word.get(word, ()))
        hits = [pair for sig in candidates if vs.matches(idx.concepts[sig]) for pair in idx.groups[sig]]
        hits.sort(key=lambda pair: pair[0])
        return self._usable(rtype, (res for _, res in hits))
