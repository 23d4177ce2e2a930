"""Record: one patient's FHIR data for one hook call, indexed raw and parsed lazily.

Prefetch values and fetched search results arrive as JSON. The record keeps the raw
resources (deduplicated by ``Type/id``), indexes them by type, by code and by the words
of their codes' displays, and reads a resource through ``fhir.resources`` only when a
rule uses it (``read()``): the tolerant reader of ``models`` repairs or drops the faulty
elements and the rest of the resource is used. A resource is never discarded for an
element no rule reads; its problems are counted (``invalid``) and listed by element
path (``problems``), never by value.

Unknown is not absent: a resource type whose data did not arrive whole (a search cut
off at the page cap, a fetch that failed) is marked ``incomplete``, and rules must not
state absence of anything of that type (``complete()``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Iterable, Iterator

from . import models as fhir
from .models import Problem
from .terminology import ICD10CM, ValueSet, concept_words, items, normalize_code, one, valuesets_keyed
from .terminology import codings as codings_in

__all__ = ["Record", "CONCEPT_FIELDS", "flatten", "untyped_entries", "concept_unreadable"]

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
        for entry in items(value.get("entry")):
            if isinstance(entry, dict):
                yield from flatten(entry.get("resource"))
    elif isinstance(value.get("resourceType"), str):
        yield value


def untyped_entries(value: object) -> int:
    """How many entries of a Bundle (nested Bundles too) hold an object whose ``resourceType`` cannot be
    read: ``flatten`` leaves them out, yet each could be of any type."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return 0
    count = 0
    for entry in items(value.get("entry")):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            count += untyped_entries(res) if res.get("resourceType") == "Bundle" else (
                not isinstance(res.get("resourceType"), str))
    return count


def _names_other_patient(reference: str, patient_ref: str) -> bool:
    """Whether a reference (relative or absolute) plainly names a Patient other than ``patient_ref``."""
    parts = reference.rstrip("/").split("/")
    return len(parts) >= 2 and parts[-2] == "Patient" and f"Patient/{parts[-1]}" != patient_ref


def _malformed_codings(concept: dict) -> bool:
    """Whether a CodeableConcept's ``coding`` is there but cannot be read whole: not a list of
    objects, empty, a coding whose system or code is not a string, or one with neither code nor
    display (a display-only coding is fine)."""
    if "coding" not in concept:
        return False
    found = concept["coding"]
    if found.__class__ is dict:
        found = [found]
    if found.__class__ is not list or not found:
        return True
    for coding in found:
        if coding.__class__ is not dict:
            return True
        for key in ("system", "code"):
            if key in coding and one(coding[key]) is None:
                return True
        if one(coding.get("code")) is None and one(coding.get("display")) is None:
            return True  # a coding that names nothing
    return False


def concept_unreadable(value: object) -> bool:
    """Whether a CodeableConcept element that is there cannot be read: not an object (a one-item list
    is read as its item, a bare string as its text), codings that cannot be read whole, or neither a
    code, a display nor a text. An absent element (``None``) is not unreadable, it is absent."""
    if value is None:
        return False
    if value.__class__ is list and len(value) == 1:
        value = value[0]
    if value.__class__ is str:
        return not value.strip()
    if value.__class__ is not dict:
        return True
    if _malformed_codings(value):
        return True
    named = any(one(c.get(k)) for c in codings_in(value) for k in ("code", "display"))
    return not named and not concept_words(value.get("text"))


def _concept(resource: dict, field_name: str) -> dict:
    """The resource's main CodeableConcept as filed (a list of one is read as its item)."""
    concept = resource[field_name]
    concept = concept[0] if concept.__class__ is list else concept
    return {"text": concept} if concept.__class__ is str else concept


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


_NO_TYPE = object()  # before the first entry of a Bundle
_FIRST = itemgetter(0)  # (position, resource) pairs sort by position

# Types whose main code says what a resource is (a Medication may be named by its ingredients).
_CODED_TYPES = frozenset(CONCEPT_FIELDS) - {"Medication"}


@dataclass
class _TypeIndex:
    groups: dict[tuple, list[tuple[int, dict]]]   # concept signature -> (position, resource)
    concepts: dict[tuple, dict]                   # concept signature -> one such CodeableConcept
    by_code: dict[tuple[str, str], list[tuple]]   # (system, code or ICD prefix) -> signatures
    by_word: dict[str, list[tuple]]               # display / text word -> signatures
    unreadable: int = 0                           # resources whose concept cannot be read (whole)


class Record:
    """The patient's data a hook call can see."""

    def __init__(self, patient_id: str, resources: Iterable[dict], now: datetime,
                 full_urls: dict[int, str] | None = None):
        self.patient_id = patient_id
        self.now = now
        self.invalid = 0
        self.untyped = 0
        self.incomplete: set[str] = set()   # resource types whose data did not arrive whole
        self._uncoded: dict[str, int] = {}  # resources per type whose main code cannot be read at all
        self._problems: dict[Problem, None] = {}
        self._other_patient: set[int] = set()
        self._patient_ref = f"Patient/{patient_id}"
        self._by_type: dict[str, list[dict]] = defaultdict(list)
        self._groups: dict[str, dict[tuple, list[tuple[int, dict]]]] = defaultdict(dict)
        self._full_urls: dict[str, dict] = {}
        self._refs: dict[str, dict] | None = None  # "Type/id" and fullUrl -> resource, built on first resolve()
        self._readings: dict[int, fhir.Reading] = {}
        self._text_coded: set[int] = set()  # resources read whose main code arrived as a bare string
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
        last_type: object = _NO_TYPE  # no resourceType (None) is a type change too
        same_type: list[dict] = []
        groups: dict[tuple, list[tuple[int, dict]]] = {}
        field_name = "code"
        entries = value.get("entry")
        for entry in entries if entries.__class__ is list else items(entries):
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
                    self.untyped += 1  # what it is cannot be read: no absence can be stated of any type
                    continue
                last_type, same_type, groups = rtype, by_type[rtype], all_groups[rtype]
                field_name = CONCEPT_FIELDS.get(rtype, "code")
            full_url = entry.get("fullUrl")
            if full_url.__class__ is str:
                if "id" not in res:
                    res = {**res, "_fullUrl": full_url}
                full_urls[full_url] = res
            concept = res.get(field_name)
            if concept.__class__ is list and len(concept) == 1:
                concept = concept[0]  # one CodeableConcept sent as a list of one: read as the reader repairs it
            if concept.__class__ is str and rtype in _CODED_TYPES:
                # a bare string: matched by its words, as the reader repairs it ({"text": ...}); it cannot be
                # matched by code, so its type is not whole for absence (a lab's "2601-3" may be magnesium)
                self._uncoded[rtype] = self._uncoded.get(rtype, 0) + 1
                concept = {"text": concept}
            if concept.__class__ is dict:
                codings = concept.get("coding")
                sig: tuple
                try:
                    if codings.__class__ is list and len(codings) == 1 and codings[0].__class__ is dict:
                        one_coding = codings[0]  # the usual shape: _signature's first case, inline
                        sig = (concept.get("text"), one_coding.get("system"), one_coding.get("code"),
                               one_coding.get("display"))
                    else:
                        sig = _signature(concept)
                    group = groups.get(sig)
                except TypeError:  # a value that cannot be hashed: the concept is its own group
                    sig, group = ("unhashable", id(concept)), None
                if group is None:
                    groups[sig] = group = []
                group.append((len(same_type), res))
            elif rtype in _CODED_TYPES and (concept is not None or field_name == "code"):
                self._uncoded[rtype] = self._uncoded.get(rtype, 0) + 1  # what it is cannot be read
            same_type.append(res)

    def _usable(self, rtype: str, resources: Iterable[dict]) -> list[dict]:
        """``resources`` (in record order) less those about another patient and second copies
        of the same ``Type/id``."""
        out: list[dict] = []
        seen: set[str] = set()
        patient_ref = self._patient_ref
        for res in resources:
            subject = res.get("subject") or res.get("patient")
            # a bare string where a Reference belongs still names its patient
            ref = subject.get("reference") if subject.__class__ is dict else subject
            if ref != patient_ref:  # the usual case (this patient) needs no more checks
                if ref.__class__ is list and len(ref) == 1:
                    ref = ref[0]
                if ref.__class__ is str and ref != patient_ref and _names_other_patient(ref, patient_ref):
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

    def containing(self, *types: str) -> list[dict]:
        """The usable resources of ``types`` that hold ``contained`` resources (panels), in record order."""
        out: list[dict] = []
        for t in types:
            out.extend(self._usable(t, [r for r in self._by_type.get(t, ()) if "contained" in r]))
        return out

    def count(self) -> int:
        return sum(len(v) for v in self._by_type.values())

    def resolve(self, reference: object, within: dict | None = None) -> dict | None:
        """A referenced resource: ``#id`` contained in ``within``, ``Type/id``, or a fullUrl."""
        reference = one(reference)
        if not reference:
            return None
        if reference.startswith("#") and isinstance(within, dict):
            for c in items(within.get("contained")):
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

    # -- reading resources ----------------------------------------------------------
    def reading(self, resource: dict) -> fhir.Reading:
        """The resource as read by the tolerant reader (once per resource and call)."""
        key = id(resource)
        found = self._readings.get(key)
        if found is None:
            full_url = resource.get("_fullUrl")
            clean = {k: v for k, v in resource.items() if k != "_fullUrl"} if "_fullUrl" in resource else resource
            found = fhir.read(clean)
            if found.data is clean:
                found.data = resource  # unchanged: the very object the record holds
            elif full_url is not None:
                found.data["_fullUrl"] = full_url
            if found.problems:
                self.invalid += 1
                main = CONCEPT_FIELDS.get(str(resource.get("resourceType")), "code")
                for problem in found.problems:
                    self._problems.setdefault(problem)
                    if problem.path == main and problem.action == "read as text":
                        self._text_coded.update((key, id(found.data)))
            self._readings[key] = found
        return found

    def code_was_text(self, resource: dict) -> bool:
        """Whether a resource read here (as sent, or as read) had a bare string for its main code: it is
        matched by its words only, never by code, so what it is for is not known for sure."""
        return id(resource) in self._text_coded

    def read(self, resource: dict) -> dict:
        """The resource's JSON as rules read it: repaired where FHIR's intent is unambiguous, faulty
        elements dropped; the same object when nothing was wrong."""
        return self.reading(resource).data

    def model(self, resource: dict):
        """The R4B model of a raw resource (built once), or None when a required element is missing."""
        return self.reading(resource).model

    @property
    def problems(self) -> list[str]:
        """Every element problem met so far, as ``Type.path: action`` (no values)."""
        return [str(p) for p in self._problems]

    # -- completeness ---------------------------------------------------------------
    def mark_incomplete(self, *resource_types: str) -> None:
        """Data of these types did not arrive whole: absence of anything of them cannot be stated."""
        self.incomplete.update(resource_types)

    def complete(self, *resource_types: str) -> bool:
        """Whether every listed type arrived whole and every resource of it says what it is (a code,
        display or text that can be read): only then may "none on the record" be said of it. A
        resource whose own type cannot be read could be of any type, so it makes every type unsure."""
        if self.untyped or self.incomplete & set(resource_types):
            return False
        return not any(self._uncoded.get(t, 0) or self._index(t).unreadable for t in resource_types)

    def memo(self, key: object, compute):
        """``compute()`` once per call for ``key``: shared lookups several rules make."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value

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
        concepts = {sig: _concept(group[0][1], field_name) for sig, group in groups.items()}
        by_code: dict[tuple[str, str], list[tuple]] = defaultdict(list)
        by_word: dict[str, list[tuple]] = defaultdict(list)
        unreadable = 0
        for sig, concept in concepts.items():
            words: set[str] = set(concept_words(concept.get("text")))
            coded = False
            for coding in codings_in(concept):
                system, code = one(coding.get("system")), one(coding.get("code"))
                if system is not None and code is not None:
                    coded = True
                    norm = normalize_code(system, code)
                    by_code[(system, norm)].append(sig)
                    if system == ICD10CM:
                        for n in range(3, min(len(norm), 8)):  # ICD-10-CM codes have at most 7 characters
                            by_code[(system, norm[:n])].append(sig)
                words.update(concept_words(coding.get("display")))
            for w in words:
                by_word[w].append(sig)
            if (not coded and not words) or _malformed_codings(concept):
                unreadable += len(groups[sig])
        idx = _TypeIndex(groups, concepts, by_code, by_word, unreadable)
        self._indexes[rtype] = idx
        return idx

    def may_be_coded(self, rtype: str) -> frozenset[str]:
        """Names of the value sets some resource of ``rtype`` is coded in, whoever it is about: a
        superset of those ``coded`` finds (which leaves out other patients' resources), decided
        once per distinct concept. What rules' triggers are checked against."""
        def compute() -> frozenset[str]:
            idx = self._index(rtype)
            sets_by_key, sets_by_word = valuesets_keyed()
            candidates: dict[str, tuple[ValueSet, set[tuple]]] = {}
            pairs: tuple[tuple[dict[Any, list[tuple]], dict[Any, tuple[ValueSet, ...]]], ...] = (
                (idx.by_code, sets_by_key), (idx.by_word, sets_by_word))
            for index, sets_of in pairs:
                for key, sigs in index.items():
                    for vs in sets_of.get(key, ()):
                        candidates.setdefault(vs.name, (vs, set()))[1].update(sigs)
            return frozenset(name for name, (vs, sigs) in candidates.items()
                             if any(vs.matches(idx.concepts[sig]) for sig in sigs))

        return self.memo(("may-be-coded", rtype), compute)

    def named(self, rtype: str, *words: str) -> list[dict]:
        """Raw resources of ``rtype`` whose main code's text or a coding display holds every one of
        ``words`` (lower case), in record order, whatever their codes: what a local code names."""
        def compute() -> list[dict]:
            idx = self._index(rtype)
            sigs: set[tuple] | None = None
            for word in words:
                found = set(idx.by_word.get(word, ()))
                sigs = found if sigs is None else sigs & found
            hits = sorted((pair for sig in sigs or () for pair in idx.groups[sig]), key=_FIRST)
            return self._usable(rtype, [res for _, res in hits])

        return list(self.memo(("named", rtype, words), compute))

    def coded(self, rtype: str, vs: ValueSet, field_name: str | None = None) -> list[dict]:
        """Raw resources of ``rtype`` whose main code (or ``field_name``) is in ``vs``, in record order."""
        field_name = field_name or CONCEPT_FIELDS.get(rtype, "code")
        key = ("coded", rtype, vs.name, field_name)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._coded(rtype, vs, field_name)
        return list(found)  # type: ignore[call-overload]

    def coded_copies(self, rtype: str, vs: ValueSet) -> list[dict]:
        """Every resource of ``rtype`` whose main code is in ``vs``, in record order, before the checks
        ``coded`` makes (resources about another patient, second copies of a ``Type/id``): for a caller
        that passes over most of them on another ground first (a lab history's old results) and then
        hands the rest to ``usable``. Shared: callers must not change the list."""
        key = ("coded-copies", rtype, vs.name)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._copies(rtype, vs)
        return found  # type: ignore[return-value]

    def usable(self, rtype: str, resources: Iterable[dict]) -> list[dict]:
        """``resources`` of ``rtype`` (in record order) less those about another patient and second
        copies of the same ``Type/id`` among them: what ``coded`` leaves."""
        return self._usable(rtype, resources)

    def _coded(self, rtype: str, vs: ValueSet, field_name: str) -> list[dict]:
        if field_name != CONCEPT_FIELDS.get(rtype, "code"):
            return [r for r in self.of_type(rtype) if vs.matches(r.get(field_name))]
        return self._usable(rtype, self.coded_copies(rtype, vs))

    def _copies(self, rtype: str, vs: ValueSet) -> list[dict]:
        idx = self._index(rtype)
        if not idx.groups or vs.name not in self.may_be_coded(rtype):
            return []  # no concept of the type is in the set (decided once per call for every set)
        # the value set's keys against the record's codes (and first words against its words),
        # probing the larger side with the smaller one
        candidates: set[tuple] = set()
        probes: tuple[tuple[frozenset[Any], dict[Any, list[tuple]]], ...] = (
            (vs.keys, idx.by_code), (vs.first_words, idx.by_word))
        for keys, index in probes:
            if len(keys) <= len(index):
                for key in keys:
                    if key in index:
                        candidates.update(index[key])
            else:
                for key, sigs in index.items():
                    if key in keys:
                        candidates.update(sigs)
        hits = [pair for sig in candidates if vs.matches(idx.concepts[sig]) for pair in idx.groups[sig]]
        hits.sort(key=_FIRST)
        return [res for _, res in hits]
