"""Twitch: which twitching counts as limb or body fasciculation, and which is eyelid or face only.

Shared by ``emg-evaluation``, ``electrolyte-check`` and the leg rules (through ``_leg``).

Twitching confined to the eyelid or face is, as a rule, myokymia: a rippling of the
orbicularis oculi or facial muscles, not the fasciculation of a limb or trunk muscle that
the guideline's EMG, leg and electrolyte advice is about. A fasciculation finding is
**face only** when every place the record gives for it names the eyelid or face:

* its ``bodySite`` concepts (text or display) all name the eyelid / eye / face (and none
  names anything else), or
* it has no body site and its own code's words name the eyelid or face ("Eyelid
  twitching", "Facial myokymia"), or it is coded ICD-10-CM G51.4 "Facial myokymia".

A finding with no place at all is **not** face only: unknown is not absent, and the rules
treat undated or unplaced twitching as they always have. The tongue is not the face here:
tongue fasciculations are a bulbar sign of motor neuron disease.

Guideline: the guideline is silent on eyelid twitching. 000 speaks of fasciculations of
"affected muscle groups" and of EMG to "distinguish benign fasciculations from pathologic
neuromuscular disease"; 003 of twitching "throughout the body, including the hamstrings".
"""

from __future__ import annotations

import re

from ..fhir.record import Record
from ..fhir.terminology import ICD10CM, normalize_code
from .clinical import Finding, findings
from .clinical.elements import codings_of, words_of

__all__ = ["face_only", "body_twitching", "FACE_WORDS"]

FACE_WORDS = ("eyelid", "eyelids", "eye lid", "eye lids", "lid", "lids", "eye", "eyes", "periocular", "periorbital",
              "orbicularis oculi", "blepharospasm", "face", "facial", "cheek", "cheeks", "brow", "eyebrow",
              "eyebrows", "myokymia")
_FACE = re.compile(r"\b(" + "|".join(FACE_WORDS) + r")\b", re.I)
_FACIAL_MYOKYMIA = (ICD10CM, "G514")


def _names_face(concept: object) -> bool:
    if any((c.get("system"), normalize_code(c.get("system"), c.get("code"))) == _FACIAL_MYOKYMIA
           for c in codings_of(concept)):
        return True
    return any(_FACE.search(t) for t in words_of(concept))


def face_only(finding: Finding) -> bool:
    """Whether the record places this twitching in the eyelid or face and nowhere else (module doc)."""
    if finding.body_sites:
        return all(_names_face(site) for site in finding.body_sites)
    return _names_face(finding.resource.get("code"))


def body_twitching(record: Record) -> tuple[list[Finding], list[Finding]]:
    """Present fasciculations split into (limb or body or unplaced, eyelid or face only), earliest first."""
    kept: list[Finding] = []
    face: list[Finding] = []
    for f in findings(record, "fasciculation"):
        (face if face_only(f) else kept).append(f)
    return kept, face
