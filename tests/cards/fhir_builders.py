"""Small FHIR builders shared by the rule unit tests in ``tests/cards``.

Each test builds a Record by hand from these resources and runs one rule through a ``Call``,
as the engine does (``run``); order-hook tests pass the draft orders, which are judged and
listed as drafts. The helpers at the end read what a card suggests.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cdshooks.cards import registry as rules
from cdshooks.cards.card import Action, Card
from cdshooks.cards.registry import Call
from cdshooks.config import RuleSettings
from cdshooks.fhir.models import validation_errors
from cdshooks.fhir.record import Record
from cdshooks.fhir.terminology import ICD10CM, LOINC, RXNORM, SNOMED, UCUM

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PATIENT = {"reference": "Patient/p1"}
CPT = "http://www.ama-assn.org/go/cpt"
__all__ = ["NOW", "PATIENT", "CPT", "ICD10CM", "LOINC", "RXNORM", "SNOMED",
           "ago", "concept", "site", "condition", "twitch", "weakness", "cramp", "cirrhosis", "finding", "lab",
           "lgi1", "order", "draft", "rx", "text", "mg", "tablets", "med", "med_draft",
           "run", "only_action", "created", "codes", "valid"]


# -- resources on file -------------------------------------------------------------------------------------


def ago(days: float) -> str:
    """An ISO instant ``days`` before NOW."""
    return (NOW - timedelta(days=days)).isoformat()


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict:
    """A CodeableConcept of one coding, with an optional display and text."""
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: dict = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


def site(text: str | None = None, code: str | None = None) -> list[dict]:
    """A ``bodySite`` list of one concept: a SNOMED code, a free text, or both."""
    out: dict = {}
    if code:
        out["coding"] = [{"system": SNOMED, "code": code}]
    if text:
        out["text"] = text
    return [out]


def condition(rid: str, code: dict, *, clinical: str = "active", onset_days: float = 10, **extra) -> dict:
    """A Condition with a clinical status and an onset ``onset_days`` ago (recent by default)."""
    return {"resourceType": "Condition", "id": rid, "subject": PATIENT, "code": code,
            "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical),
            "onsetDateTime": ago(onset_days), **extra}


def twitch(rid: str = "tw", **extra) -> dict:
    return condition(rid, concept(SNOMED, "82470000", "Muscle fasciculation"), **extra)


def weakness(rid: str = "wk", **extra) -> dict:
    return condition(rid, concept(SNOMED, "26544005", "Muscle weakness"), **extra)


def cramp(rid: str = "cr", **extra) -> dict:
    return condition(rid, concept(SNOMED, "55300003", "Cramp"), **extra)


def cirrhosis(rid: str = "ci", **extra) -> dict:
    return condition(rid, concept(ICD10CM, "K74.60", "Unspecified cirrhosis of liver"), **extra)


def finding(rid: str, code: dict, days_ago: float = 1, **extra) -> dict:
    """An exam-finding Observation, present unless ``extra`` negates it."""
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": PATIENT, "code": code,
            "effectiveDateTime": ago(days_ago), "valueBoolean": True, **extra}


def lab(rid: str, loinc: str, value: float, unit: str, days_ago: float, **extra) -> dict:
    """A final laboratory Observation with a UCUM quantity."""
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": PATIENT,
            "code": concept(LOINC, loinc), "effectiveDateTime": ago(days_ago),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}, **extra}


def lgi1(rid: str, days_ago: float, **value) -> dict:
    """An LGI1 antibody result; ``value`` gives its value or interpretation."""
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": PATIENT,
            "code": concept(LOINC, "82978-8"), "effectiveDateTime": ago(days_ago), **value}


def order(rid: str, code: dict, days_ago: float, rtype: str = "ServiceRequest", status: str = "completed",
          **extra) -> dict:
    """A ServiceRequest / Procedure / DiagnosticReport already on file, dated ``days_ago``."""
    res = {"resourceType": rtype, "id": rid, "subject": PATIENT, "code": code, "status": status, **extra}
    if rtype == "ServiceRequest":
        res.update(intent="order", authoredOn=ago(days_ago))
    elif rtype == "Procedure":
        res["performedDateTime"] = ago(days_ago)
    else:
        res["effectiveDateTime"] = ago(days_ago)
    return res


def draft(rid: str, code: dict, **extra) -> dict:
    """A draft ServiceRequest of the ordering session."""
    return {"resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order", "subject": PATIENT,
            "code": code, **extra}


# -- medications -------------------------------------------------------------------------------------------


def rx(code: str, display: str | None = None) -> dict:
    """An RxNorm-coded medication, to pass to ``med``."""
    return {"medicationCodeableConcept": concept(RXNORM, code, display)}


def text(words: str) -> dict:
    """A text-only medication, to pass to ``med``."""
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


def med_draft(rid: str, medication: dict, **dosing) -> dict:
    """A draft MedicationRequest of the ordering session (``dosing``: ``med``'s dose options)."""
    return med(rid, medication, status="draft", days_ago=0, **dosing)


# -- running a rule and reading its cards ------------------------------------------------------------------


def run(rule_id: str, *resources: dict, drafts: tuple[dict, ...] = (), selected: tuple[dict, ...] | None = None,
        fired: tuple[str, ...] = (), **settings) -> list[Card]:
    """The rule's cards for a record of ``resources``.

    With ``drafts`` the call is order-sign (every draft judged), or order-select when
    ``selected`` names the drafts judged; otherwise patient-view. ``fired``: rules that
    already fired in the call; ``settings``: RuleSettings fields.
    """
    hook = "order-select" if selected is not None else "order-sign" if drafts else "patient-view"
    judged = list(selected) if selected is not None else list(drafts)
    call = Call(hook=hook, now=NOW, record=Record("p1", list(resources), NOW), settings=RuleSettings(**settings),
                orders=judged, draft_orders=list(drafts), _fired=set(fired))
    return rules.load()[rule_id].run(call)


def only_action(card: Card) -> Action:
    """The card's one action, failing unless it has exactly one suggestion with one action."""
    [suggestion] = card.suggestions
    [action] = suggestion.actions
    return action


def _resources(card: Card) -> list[dict]:
    """Every resource the card's actions carry (create or update)."""
    return [a.resource for s in card.suggestions for a in s.actions if a.resource]


def created(card: Card) -> list[dict]:
    """The resources of the card's create actions."""
    return [a.resource for s in card.suggestions for a in s.actions if a.type == "create" and a.resource]


def codes(card: Card) -> set[str]:
    """Every code the card's suggested resources carry (order code or medication code)."""
    out = set()
    for res in _resources(card):
        concept_ = res.get("code") or res.get("medicationCodeableConcept") or {}
        out |= {c["code"] for c in concept_.get("coding", [])}
    return out


def valid(card: Card) -> bool:
    """Every resource the card suggests is valid FHIR R4."""
    return all(validation_errors(r) == [] for r in _resources(card))
