"""Findings: whether a symptom or diagnosis is present, since when, and where.

"A finding is present" (catalogue section 1) when either

* a ``Condition`` is coded with it whose ``verificationStatus`` is not ``refuted`` or
  ``entered-in-error``, whose ``clinicalStatus`` is ``active``, ``recurrence`` or
  ``relapse`` or absent (a clinicalStatus carrying no code at all counts as absent), and
  that has not abated (any ``abatement[x]`` means abated, except an
  ``abatementDateTime`` / ``abatementPeriod.start`` still in the future); or
* an ``Observation`` is coded with it, with status ``final``, ``amended``, ``corrected``
  or ``preliminary``, that is not negated: ``valueBoolean: false``; a value meaning
  absent or negative (SNOMED Absent 2667000, Negative 260385009, Not detected 260415000,
  No 373067005, Non-reactive 131194007, HL7 yes/no ``N``, or a text or string value
  starting with no / not / none / absent / negative / denies / without); or an
  interpretation ``NEG`` / ``ND`` or one whose text says negative or absent.

Resources are read tolerantly (``record.read``): a faulty element is repaired or dropped,
never the whole resource. A finding's status that cannot be read (a Condition's
``clinicalStatus`` / ``verificationStatus`` that is not a CodeableConcept holding one of its
codes, an Observation ``status`` that is not an Observation status code) leaves the finding
**in doubt** (``findings_in_doubt``): a Condition in doubt is not present, and no rule may
say the finding is absent while one is on the record.

Location (catalogue section 2, last paragraph): a finding's place comes from its
``bodySite`` (coded in ``site_hamstring`` / ``site_thigh`` / ``site_lower_limb``, or the
words in ``THIGH_WORDS`` / ``LIMB_WORDS`` or those value sets' names in a body-site text
or display) or from the words of its own code ("Cramp in lower leg"). A present hamstring injury
(``hamstring_injury``, ICD-10-CM S76.3x) or thigh pain (``thigh_pain``, M79.65x)
diagnosis places a finding in the thigh as well, unless the finding's own body site
names a place outside the lower limb (twitching of the eyelid stays in the eyelid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ...fhir.record import Record, concept_unreadable
from ...fhir.terminology import SNOMED, ValueSet, valueset
from .elements import ResourceFacts, codes_of, codings_of, first_time, items, label_of, one, readable, words_of

__all__ = ["Finding", "findings", "onset", "in_thigh", "in_lower_limb", "condition_present",
           "observation_present", "status_in_doubt", "findings_in_doubt", "THIGH_WORDS", "LIMB_WORDS"]

CONDITION_ACTIVE = {"active", "recurrence", "relapse"}
CONDITION_NOT_TRUE = {"refuted", "entered-in-error"}
OBSERVATION_STATUSES = {"final", "amended", "corrected", "preliminary"}
# Every code of each status element: a status outside these (or one that cannot be read) is in doubt.
CONDITION_CLINICAL_CODES = frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"})
CONDITION_VERIFICATION_CODES = frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted",
                                          "entered-in-error"})
OBSERVATION_CODES = frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                               "entered-in-error"})

_NEGATIVE_SNOMED = {"2667000", "260385009", "260415000", "373067005", "131194007"}
_NEGATIVE_INTERPRETATION = {"NEG", "ND"}
_NEGATIVE_WORDS = re.compile(r"^\s*(no|not|none|nil|absent|negative|denies|denied|without)\b", re.I)
_NEGATIVE_ANYWHERE = re.compile(r"\b(negative|absent)\b", re.I)

THIGH_WORDS = ("hamstring", "hamstrings", "thigh", "thighs", "biceps femoris",
               "semitendinosus", "semimembranosus")
LIMB_WORDS = THIGH_WORDS + ("leg", "legs", "calf", "calves", "lower limb", "lower limbs",
                            "lower extremity", "lower extremities")
_THIGH_TEXT = re.compile(r"\b(" + "|".join(THIGH_WORDS) + r")\b", re.I)
_LIMB_TEXT = re.compile(r"\b(" + "|".join(LIMB_WORDS) + r")\b", re.I)


@dataclass(frozen=True)
class Finding(ResourceFacts):
    """One present finding: the resource, why it matched, when it began and where it is."""

    resource: dict
    valueset: str                   # the value set name it was found under
    coding: dict                    # the coding that matched (``{"display": text}`` for a text match)
    display: str                    # a human label for card text
    onset: datetime | None
    body_sites: tuple[dict, ...]    # the resource's ``bodySite`` CodeableConcept(s)


def _condition_status_doubt(value: object, known: frozenset[str]) -> bool:
    """Whether a Condition's clinicalStatus / verificationStatus as sent cannot be read: not a
    CodeableConcept (a bare string is read only when it is one of the element's codes), codings that
    cannot be read, or codings none of which carries a code of the element. A status with no coding
    at all (absent, or text only) is not in doubt: it counts as absent."""
    if value.__class__ is list and len(value) == 1:
        value = value[0]
    if value is None:
        return False
    if value.__class__ is str:
        return value.strip().lower() not in known
    if value.__class__ is not dict or concept_unreadable(value):
        return True
    if "coding" not in value:
        return False
    return not codes_of(value) & known


def status_in_doubt(raw: dict) -> bool:
    """Whether a Condition's or Observation's status, as sent, cannot be read: the resource may hold
    its finding or not, so it is neither present nor absent (``findings_in_doubt``)."""
    if raw.get("resourceType") == "Condition":
        return (_condition_status_doubt(raw.get("clinicalStatus"), CONDITION_CLINICAL_CODES)
                or _condition_status_doubt(raw.get("verificationStatus"), CONDITION_VERIFICATION_CODES))
    return one(raw.get("status")) not in OBSERVATION_CODES


def findings_in_doubt(record: Record, *valueset_names: str) -> list[dict]:
    """Conditions and Observations coded in any of the value sets whose status cannot be read
    (``status_in_doubt``): what they say is unknown, so no rule may state that the finding is absent."""
    def compute() -> list[dict]:
        out: list[dict] = []
        for name in valueset_names:
            for rtype in ("Condition", "Observation"):
                out.extend(raw for raw in record.coded(rtype, valueset(name))
                           if status_in_doubt(raw) and all(raw is not r for r in out))
        return out

    return list(record.memo(("findings-in-doubt", valueset_names), compute))


def condition_present(resource: dict, now: datetime) -> bool:
    """The Condition half of "a finding is present" (validity is checked by the caller)."""
    if codes_of(resource.get("verificationStatus")) & CONDITION_NOT_TRUE:
        return False
    clinical = codes_of(resource.get("clinicalStatus"))
    if clinical and not clinical & CONDITION_ACTIVE:
        return False
    abatement_keys = [k for k in resource if isinstance(k, str) and k.startswith("abatement")]
    if not abatement_keys:
        return True
    ends = first_time(resource, "abatementDateTime", "abatementPeriod.start")
    return ends is not None and ends > now and set(abatement_keys) <= {"abatementDateTime", "abatementPeriod"}


def _negative_concept(concept: object) -> bool:
    for coding in codings_of(concept):
        code, system = one(coding.get("code")), one(coding.get("system"))
        if system == SNOMED and code in _NEGATIVE_SNOMED:
            return True
        if code == "N" and isinstance(system, str) and system.endswith("v2-0136"):
            return True
    return any(_NEGATIVE_WORDS.search(t) for t in words_of(concept))


def observation_present(resource: dict) -> bool:
    """The Observation half of "a finding is present" (validity is checked by the caller)."""
    if one(resource.get("status")) not in OBSERVATION_STATUSES:
        return False
    if resource.get("valueBoolean") is False:
        return False
    if _negative_concept(resource.get("valueCodeableConcept")):
        return False
    value_string = one(resource.get("valueString"))
    if isinstance(value_string, str) and _NEGATIVE_WORDS.search(value_string):
        return False
    for interpretation in items(resource.get("interpretation")):
        if codes_of(interpretation) & _NEGATIVE_INTERPRETATION:
            return False
        if any(_NEGATIVE_ANYWHERE.search(t) for t in words_of(interpretation)):
            return False
    return True


def _onset_of(resource: dict) -> datetime | None:
    if resource.get("resourceType") == "Condition":
        return first_time(resource, "onsetDateTime", "onsetPeriod.start", "recordedDate")
    return first_time(resource, "effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")


def _body_sites(resource: dict) -> tuple[dict, ...]:
    return tuple(s for s in items(resource.get("bodySite")) if isinstance(s, dict))


def findings(record: Record, *valueset_names: str) -> list[Finding]:
    """Present findings coded in any of the named value sets, earliest onset first.

    A resource coded in several of the sets appears once (under the first name that
    matched). Undated findings come last. ``record.now`` decides future abatement.
    Computed once per call for each list of names (several rules ask the same).
    """
    return list(record.memo(("findings", valueset_names), lambda: _findings(record, valueset_names)))


def _findings(record: Record, valueset_names: tuple[str, ...]) -> list[Finding]:
    out: list[Finding] = []
    seen: set[int] = set()
    for name in valueset_names:
        vs: ValueSet = valueset(name)
        for rtype in ("Condition", "Observation"):
            for raw in record.coded(rtype, vs):
                if id(raw) in seen:
                    continue
                found = _finding(record, raw, rtype, name, vs)
                if found is not None:
                    seen.add(id(raw))
                    out.append(found)
    out.sort(key=lambda f: (f.onset is None, f.onset or record.now))
    return out


def _finding(record: Record, raw: dict, rtype: str, name: str, vs: ValueSet) -> Finding | None:
    """The finding a resource coded in ``vs`` holds (None when it is not present), once per call
    for each resource and value set: several rules ask for findings of overlapping value sets."""
    def compute() -> Finding | None:
        res = _present(record, raw, rtype)
        if res is None:
            return None
        coding = vs.matching_coding(res.get("code")) or {}
        return Finding(resource=res, valueset=name, coding=coding,
                       display=label_of(res.get("code"), coding.get("display") or vs.title),
                       onset=_onset_of(res), body_sites=_body_sites(res))

    # the record holds ``raw`` for the whole call: its id stays its own
    return record.memo(("finding", id(raw), name), compute)


def _present(record: Record, raw: dict, rtype: str) -> dict | None:
    """The resource as read when it holds its finding: readable, its status readable, and present."""
    def compute() -> dict | None:
        res = readable(record, raw)
        if res is None or (rtype == "Condition" and status_in_doubt(raw)):
            return None  # a Condition whose status cannot be read is in doubt, not present
        present = condition_present(res, record.now) if rtype == "Condition" else observation_present(res)
        return res if present else None

    return record.memo(("present", id(raw)), compute)


def onset(found: list[Finding]) -> datetime | None:
    """The earliest onset among findings (None when none is dated)."""
    dates = [f.onset for f in found if f.onset is not None]
    return min(dates) if dates else None


def _site_in(finding: Finding, names: tuple[str, ...], words: re.Pattern[str]) -> bool:
    """Whether a body site (by code or words) or the finding's own code text names one of the sites."""
    for site in finding.body_sites:
        if any(valueset(n).matches(site) for n in names) or any(words.search(t) for t in words_of(site)):
            return True
    return any(words.search(t) or any(valueset(n).name_matches(t) for n in names)
               for t in words_of(finding.resource.get("code")))


def _located_elsewhere(finding: Finding) -> bool:
    return bool(finding.body_sites) and not _site_in(finding, ("site_hamstring", "site_thigh", "site_lower_limb"),
                                                     _LIMB_TEXT)


def in_thigh(finding: Finding, record: Record) -> bool:
    """Whether the finding is in the hamstring / back of the thigh / thigh (see module doc)."""
    if _site_in(finding, ("site_hamstring", "site_thigh"), _THIGH_TEXT):
        return True
    return not _located_elsewhere(finding) and bool(findings(record, "hamstring_injury", "thigh_pain"))


def in_lower_limb(finding: Finding, record: Record) -> bool:
    """Whether the finding is in the leg or thigh (see module doc); False when the record does not say."""
    if _site_in(finding, ("site_hamstring", "site_thigh", "site_lower_limb"), _LIMB_TEXT):
        return True
    return in_thigh(finding, record)
