"""Small FHIR builders for the electrolyte, cirrhosis-cramp and medication rule tests
(electrolyte-check/-abnormal, drug-induced-twitching, cirrhosis-cramps, baclofen-titration/-dosing,
quinidine-caution, irinotecan-interaction).

Each test builds a Record by hand and runs one rule through a ``Call`` as the engine does;
order-hook tests pass the draft orders, which are judged (``orders``) and listed as drafts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cdshooks import rules
from cdshooks.card import Card
from cdshooks.config import RuleSettings
from cdshooks.fhir import validation_errors
from cdshooks.record import Record
from cdshooks.rules import Call
from cdshooks.terminology import ICD10CM, LOINC, RXNORM, SNOMED, UCUM

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PATIENT = {"reference": "Patient/p1"}
CPT_MG = ("http://www.ama-assn.org/go/cpt", "83735")  # CPT Magnesium
__all__ = ["NOW", "CPT_MG", "ICD10CM", "LOINC", "RXNORM", "SNOMED", "ago", "concept", "condition", "twitch", "cramp",
           "cirrhosis", "lab", "order", "med", "rx", "text", "mg", "tablets", "run", "valid"]


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def concept(system: str, code: str, display: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def condition(rid: str, code: dict, *, clinical: str = "active", onset_days: float = 30, **extra) -> dict:
    return {"resourceType": "Condition", "id": rid, "subject": PATIENT, "code": code,
            "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical),
            "onsetDateTime": ago(onset_days), **extra}


def twitch(rid: str = "tw", **extra) -> dict:
    return condition(rid, concept(SNOMED, "82470000", "Muscle fasciculation"), **extra)


def cramp(rid: str = "cr", **extra) -> dict:
    return condition(rid, concept(SNOMED, "55300003", "Cramp"), **extra)


def cirrhosis(rid: str = "ci", **extra) -> dict:
    return condition(rid, concept(ICD10CM, "K74.60", "Unspecified cirrhosis of liver"), **extra)


def lab(rid: str, loinc: str, value: float, unit: str, days_ago: float, **extra) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": PATIENT,
            "code": concept(LOINC, loinc), "effectiveDateTime": ago(days_ago),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}, **extra}


def order(rid: str, code: dict, days_ago: float, rtype: str = "ServiceRequest", status: str = "completed") -> dict:
    res = {"resourceType": rtype, "id": rid, "subject": PATIENT, "code": code, "status": status}
    if rtype == "ServiceRequest":
        res.update(intent="order", authoredOn=ago(days_ago))
    elif rtype == "Procedure":
        res["performedDateTime"] = ago(days_ago)
    else:
        res["effectiveDateTime"] = ago(days_ago)
    return res


def rx(code: str, display: str | None = None) -> dict:
    return {"medicationCodeableConcept": concept(RXNORM, code, display)}


def text(words: str) -> dict:
    return {"medicationCodeableConcept": {"text": words}}


def mg(value: float) -> dict:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def tablets(value: float) -> dict:
    return {"value": value, "unit": "tablet", "system": UCUM, "code": "{tbl}"}


def med(rid: str, medication: dict, *, status: str = "active", days_ago: float = 30, dose: dict | None = None,
        per_day: int | None = None, kind: str = "MedicationRequest", **extra) -> dict:
    """A MedicationRequest (intent order) or MedicationStatement with a simple daily dosage."""
    res: dict = {"resourceType": kind, "id": rid, "status": status, "subject": PATIENT, **medication, **extra}
    dosage: dict = {}
    if per_day:
        dosage["timing"] = {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}
    if dose:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if kind == "MedicationRequest":
        res.update(intent="order", authoredOn=ago(days_ago))
        if dosage:
            res["dosageInstruction"] = [dosage]
    else:
        res["effectivePeriod"] = {"start": ago(days_ago)}
        if dosage:
            res["dosage"] = [dosage]
    return res


def run(rule_id: str, *resources: dict, drafts: tuple[dict, ...] = (), selected: tuple[dict, ...] | None = None,
        fired: tuple[str, ...] = (), **settings) -> list[Card]:
    """The rule's cards for a record of ``resources``.

    With ``drafts`` the call is order-sign (every draft judged), or order-select when
    ``selected`` names the drafts judged; otherwise patient-view.
    """
    hook = "order-select" if selected is not None else "order-sign" if drafts else "patient-view"
    judged = list(selected) if selected is not None else list(drafts)
    call = Call(hook=hook, now=NOW, record=Record("p1", list(resources), NOW), settings=RuleSettings(**settings),
                orders=judged, draft_orders=list(drafts), _fired=set(fired))
    return rules.load()[rule_id].run(call)


def valid(card: Card) -> bool:
    """Every resource the card suggests is valid FHIR R4."""
    return all(validation_errors(a.resource) == [] for s in card.suggestions for a in s.actions if a.resource)
