"""Small FHIR builders for the neuromuscular rule unit tests (MND red flag, respiratory involvement, EMG,
nerve hyperexcitability, LGI1 immunotherapy, phrenic test timing).

Each test builds a Record by hand and runs one rule through a ``Call``, as the engine does.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cdshooks import rules
from cdshooks.card import Card
from cdshooks.config import RuleSettings
from cdshooks.record import Record
from cdshooks.rules import Call
from cdshooks.terminology import ICD10CM, LOINC, RXNORM, SNOMED

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PATIENT = {"reference": "Patient/p1"}
CPT = "http://www.ama-assn.org/go/cpt"
__all__ = ["NOW", "CPT", "ICD10CM", "LOINC", "RXNORM", "SNOMED", "ago", "concept", "condition", "finding",
           "twitch", "weakness", "lgi1", "order", "medication", "draft", "run", "created", "codes"]


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


def condition(rid: str, code: dict, *, clinical: str = "active", onset_days: float = 10, **extra) -> dict:
    return {"resourceType": "Condition", "id": rid, "subject": PATIENT, "code": code,
            "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical),
            "onsetDateTime": ago(onset_days), **extra}


def finding(rid: str, code: dict, days_ago: float = 1, **extra) -> dict:
    """An exam-finding Observation, present unless ``extra`` negates it."""
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": PATIENT, "code": code,
            "effectiveDateTime": ago(days_ago), "valueBoolean": True, **extra}


def twitch(rid: str = "tw", **extra) -> dict:
    return condition(rid, concept(SNOMED, "82470000", "Muscle fasciculation"), **extra)


def weakness(rid: str = "wk", **extra) -> dict:
    return condition(rid, concept(SNOMED, "26544005", "Muscle weakness"), **extra)


def lgi1(rid: str, days_ago: float, **value) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": PATIENT,
            "code": concept(LOINC, "82978-8"), "effectiveDateTime": ago(days_ago), **value}


def order(rid: str, code: dict, days_ago: float, rtype: str = "ServiceRequest", status: str = "completed",
          **extra) -> dict:
    """A ServiceRequest / Procedure / DiagnosticReport already on file."""
    res = {"resourceType": rtype, "id": rid, "subject": PATIENT, "code": code, "status": status, **extra}
    if rtype == "ServiceRequest":
        res.update(intent="order", authoredOn=ago(days_ago))
    elif rtype == "Procedure":
        res["performedDateTime"] = ago(days_ago)
    else:
        res["effectiveDateTime"] = ago(days_ago)
    return res


def medication(rid: str, med: dict, rtype: str = "MedicationRequest") -> dict:
    if rtype == "MedicationRequest":
        return {"resourceType": rtype, "id": rid, "status": "active", "intent": "order", "subject": PATIENT,
                "medicationCodeableConcept": med, "authoredOn": ago(20)}
    return {"resourceType": rtype, "id": rid, "status": "active", "subject": PATIENT,
            "medicationCodeableConcept": med, "effectiveDateTime": ago(20)}


def draft(rid: str, code: dict, **extra) -> dict:
    """A draft ServiceRequest of the ordering session."""
    return {"resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order", "subject": PATIENT,
            "code": code, **extra}


def run(rule_id: str, *resources: dict, hook: str = "patient-view", orders: tuple[dict, ...] = (),
        drafts: tuple[dict, ...] | None = None, fired: tuple[str, ...] = (), **settings) -> list[Card]:
    """The rule's cards for a record of ``resources``; ``orders`` are judged, ``drafts`` default to them."""
    call = Call(hook=hook, now=NOW, record=Record("p1", list(resources), NOW), settings=RuleSettings(**settings),
                orders=list(orders), draft_orders=list(orders if drafts is None else drafts), _fired=set(fired))
    return rules.load()[rule_id].run(call)


def created(card: Card) -> list[dict]:
    """The resources of the card's create actions."""
    return [a.resource for s in card.suggestions for a in s.actions if a.type == "create" and a.resource]


def codes(card: Card) -> set[str]:
    """Every code the card's suggested resources carry."""
    out = set()
    for res in created(card):
        concept_ = res.get("code") or res.get("medicationCodeableConcept") or {}
        out |= {c["code"] for c in concept_.get("coding", [])}
    return out
