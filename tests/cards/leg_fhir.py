"""Small FHIR builders for the leg-rule unit tests (hamstring, thigh MRI, claudication, radiculopathy).

Each test builds a Record by hand and runs one rule through a ``Call``, as the engine does.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cdshooks import rules
from cdshooks.card import Card
from cdshooks.config import RuleSettings
from cdshooks.record import Record
from cdshooks.rules import Call
from cdshooks.terminology import ICD10CM, LOINC, SNOMED, UCUM

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PATIENT = {"reference": "Patient/p1"}
CPT = "http://www.ama-assn.org/go/cpt"
__all__ = ["NOW", "CPT", "ICD10CM", "LOINC", "SNOMED", "ago", "concept", "site", "condition", "twitch", "lab",
           "order", "run"]


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: dict = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


def site(text: str | None = None, code: str | None = None) -> list[dict]:
    out: dict = {}
    if code:
        out["coding"] = [{"system": SNOMED, "code": code}]
    if text:
        out["text"] = text
    return [out]


def condition(rid: str, code: dict, *, clinical: str = "active", onset_days: float = 10, **extra) -> dict:
    return {"resourceType": "Condition", "id": rid, "subject": PATIENT, "code": code,
            "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical),
            "onsetDateTime": ago(onset_days), **extra}


def twitch(rid: str = "tw", **extra) -> dict:
    return condition(rid, concept(SNOMED, "82470000", "Muscle fasciculation"), **extra)


def lab(rid: str, loinc: str, value: float, unit: str, days_ago: float) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": PATIENT,
            "code": concept(LOINC, loinc), "effectiveDateTime": ago(days_ago),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def order(rid: str, code: dict, days_ago: float, rtype: str = "ServiceRequest", status: str = "completed") -> dict:
    res = {"resourceType": rtype, "id": rid, "subject": PATIENT, "code": code, "status": status}
    if rtype == "ServiceRequest":
        res.update(intent="order", authoredOn=ago(days_ago))
    elif rtype == "Procedure":
        res["performedDateTime"] = ago(days_ago)
    else:
        res["effectiveDateTime"] = ago(days_ago)
    return res


def run(rule_id: str, *resources: dict, fired: tuple[str, ...] = (), **settings) -> list[Card]:
    """The rule's cards for a record of ``resources``; ``fired``: rules that already fired in the call."""
    call = Call(hook="patient-view", now=NOW, record=Record("p1", list(resources), NOW),
                settings=RuleSettings(**settings), _fired=set(fired))
    return rules.load()[rule_id].run(call)
