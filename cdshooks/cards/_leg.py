"""Leg: where a finding is, and how the hamstring / leg rules name it.

Shared by ``hamstring-twitch-care``, ``thigh-mri``, ``claudication-abi`` and
``radiculopathy-evaluation`` (catalogue section 2, the "leg or thigh" paragraph). The
location test itself is ``clinical.in_thigh`` / ``clinical.in_lower_limb``; this module
selects the findings that pass it and words the facts the cards show, so all four cards
say where the twitching is the same way. A finding whose record does not say where it is
never passes: the leg rules stay silent for it. Nor does twitching the record places only
in the eyelid or face (``_twitch.face_only``), whatever hamstring injury or thigh pain the
record also holds: eyelid myokymia is not leg twitching.
"""

from __future__ import annotations

import re
from datetime import datetime

from ..fhir.record import Record
from ..fhir.terminology import SNOMED, valueset
from ._twitch import face_only
from .clinical import Finding, findings, in_lower_limb, in_thigh
from .clinical.elements import codings_of, first_time, label_of, words_of
from .clinical.findings import LIMB_WORDS, THIGH_WORDS
from .clinical.orders_seen import order_concept

__all__ = ["GUIDE_003", "cite", "day", "thigh_findings", "leg_findings", "placing_diagnoses", "located_fact",
           "finding_fact", "on_file_fact"]

# The hamstring guideline's title, as card text cites it.
GUIDE_003 = "Hamstring Muscle Twitching: Causes and Clinical Approach"

# When an order already on file happened: ServiceRequest, Procedure, DiagnosticReport.
_ON_FILE_DATES = ("authoredOn", "occurrenceDateTime", "occurrencePeriod.start", "performedDateTime",
                  "performedPeriod.end", "performedPeriod.start", "effectiveDateTime", "effectivePeriod.end",
                  "effectivePeriod.start", "issued")
_LIMB_TEXT = re.compile(r"\b(" + "|".join(LIMB_WORDS) + r")\b", re.I)
_THIGH_TEXT = re.compile(r"\b(" + "|".join(THIGH_WORDS) + r")\b", re.I)
# Parts of the lower limb below the thigh: a finding placed there is not in the thigh, whatever
# hamstring injury or thigh pain the record also holds.
_BELOW_THIGH_TEXT = re.compile(r"\b(calf|calves|shin|shins|lower leg|lower legs|knee|knees|ankle|ankles|foot|feet|"
                               r"toe|toes|gastrocnemius|soleus)\b", re.I)
_BELOW_THIGH_CODES = {(SNOMED, "30021000"), (SNOMED, "72696002"), (SNOMED, "344001"), (SNOMED, "56459004")}


def cite(*sections: str) -> str:
    """"(Hamstring Muscle Twitching: Causes and Clinical Approach — Red Flags)"."""
    return f"({GUIDE_003} \u2014 {'; '.join(sections)})"


def day(when: datetime | None) -> str:
    """``2026-01-31``, or "undated"."""
    return f"{when:%Y-%m-%d}" if when is not None else "undated"


def thigh_findings(record: Record, *valueset_names: str) -> list[Finding]:
    """Present findings of the value sets placed in the hamstring / thigh (earliest first).

    ``in_thigh``, except that a finding whose own body site or code names only a part of
    the limb below the thigh (calf, shin, knee, ankle, foot, toes) stays there: a hamstring
    injury elsewhere in the record does not move calf twitching into the thigh.
    """
    return [f for f in findings(record, *valueset_names)
            if not face_only(f) and in_thigh(f, record) and not _below_thigh(f)]


def _below_thigh(finding: Finding) -> bool:
    """Whether the finding's own body site or code names only a part of the limb below the thigh."""
    concepts = [*finding.body_sites, finding.resource.get("code")]
    texts = [t for concept in concepts for t in words_of(concept)]
    if any(valueset("site_thigh").matches(site) for site in finding.body_sites) or any(
            _THIGH_TEXT.search(t) for t in texts):
        return False
    codes = {(c.get("system"), c.get("code")) for concept in concepts for c in codings_of(concept)}
    return bool(codes & _BELOW_THIGH_CODES) or any(_BELOW_THIGH_TEXT.search(t) for t in texts)


def leg_findings(record: Record, *valueset_names: str) -> list[Finding]:
    """Present findings of the value sets placed in the leg or thigh (earliest first)."""
    return [f for f in findings(record, *valueset_names) if not face_only(f) and in_lower_limb(f, record)]


def placing_diagnoses(record: Record) -> list[Finding]:
    """Present hamstring injury (S76.3x) or thigh pain (M79.65x) diagnoses: they place twitching in the thigh."""
    return findings(record, "hamstring_injury", "thigh_pain")


def _site_label(finding: Finding) -> str | None:
    """The first body site's text or display; for a bare code, the display our site value set gives it."""
    for site in finding.body_sites:
        if words_of(site):
            return label_of(site)
        sent = {(c.get("system"), c.get("code")) for c in codings_of(site)}
        known = [c["display"] for c in valueset("site_lower_limb").codings
                 if (c["system"], c["code"]) in sent and c.get("display")]
        label = known[0] if known else label_of(site)
        if label:
            return label
    return None


def finding_fact(finding: Finding) -> str:
    """"Muscle cramp (Condition, since 2026-01-31)"."""
    return f"{finding.display} ({finding.kind}, since {day(finding.onset)})"


def located_fact(finding: Finding, record: Record) -> str:
    """A finding with where the record places it.

    "Muscle twitching (Condition, since 2026-01-31), body site Left hamstring"; without a
    body site, the code's own words ("Cramp in lower leg") or the diagnosis that places it
    in the thigh ("in the thigh by Strain of hamstring muscle").
    """
    fact = finding_fact(finding)
    site = _site_label(finding)
    if site:
        return f"{fact}, body site {site}"
    named = any(_LIMB_TEXT.search(t) for t in words_of(finding.resource.get("code")))
    if not finding.body_sites and not named and in_thigh(finding, record):
        placing = placing_diagnoses(record)
        if placing:
            return f"{fact}, placed in the thigh by {placing[0].display} ({placing[0].kind})"
    return fact


def on_file_fact(resource: dict) -> str:
    """"Ankle-brachial index (ServiceRequest active, 2026-01-31)"."""
    label = label_of(order_concept(resource) or resource.get("code"), str(resource.get("resourceType")))
    when = first_time(resource, *_ON_FILE_DATES)
    return f"{label} ({resource.get('resourceType')} {resource.get('status')}, {day(when)})"
