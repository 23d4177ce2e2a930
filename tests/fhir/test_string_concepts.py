"""A bare string where a CodeableConcept belongs: read as its text, except a Condition's clinicalStatus /
verificationStatus, read as the code it names or else left in doubt (never active by default)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdshooks.cards.clinical import findings, findings_in_doubt, lab_absent, unnamed_orders
from cdshooks.fhir.models import read, validation_errors
from cdshooks.fhir.record import Record

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CRAMP = {"coding": [{"system": "http://snomed.info/sct", "code": "55300003", "display": "Cramp"}]}


def cramp(**extra) -> dict:
    return {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "code": CRAMP,
            "onsetDateTime": "2026-02-20", **extra}


@pytest.mark.parametrize("sent, code", [("resolved", "resolved"), (" Active ", "active"), (["remission"], "remission")])
def test_a_clinical_status_string_that_is_a_code_is_read_as_that_code(sent, code):
    reading = read(cramp(clinicalStatus=sent))
    assert reading.data["clinicalStatus"] == {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": code}]}
    assert not validation_errors(reading.data)
    assert "Condition.clinicalStatus: read as its code" in {str(p) for p in reading.problems}


@pytest.mark.parametrize("status, present", [("resolved", False), ("inactive", False), ("active", True),
                                             ("relapse", True)])
def test_a_string_clinical_status_decides_presence(status, present):
    rec = Record("p1", [cramp(clinicalStatus=status)], NOW)
    assert bool(findings(rec, "cramp")) is present
    assert findings_in_doubt(rec, "cramp") == []


@pytest.mark.parametrize("field, value", [("verificationStatus", "refuted"), ("verificationStatus", "entered-in-error"),
                                          ("verificationStatus", "REFUTED")])
def test_a_string_verification_status_that_denies_the_finding(field, value):
    rec = Record("p1", [cramp(**{field: value})], NOW)
    assert findings(rec, "cramp") == [] and findings_in_doubt(rec, "cramp") == []


@pytest.mark.parametrize("field, value", [("clinicalStatus", "Resolved last year"), ("clinicalStatus", "yes"),
                                          ("verificationStatus", "ruled out"), ("clinicalStatus", "")])
def test_any_other_status_string_leaves_the_condition_in_doubt_not_active(field, value):
    raw = cramp(**{field: value})
    rec = Record("p1", [raw], NOW)
    assert findings(rec, "cramp") == []
    assert findings_in_doubt(rec, "cramp") == [raw]
    assert field not in read(raw).data  # dropped: never read as an active, confirmed Condition


def test_a_string_code_is_read_as_text_and_matched_by_its_words():
    raw = {**cramp(), "code": "Muscle cramp"}
    reading = read(raw)
    assert reading.data["code"] == {"text": "Muscle cramp"} and not validation_errors(reading.data)
    rec = Record("p1", [raw], NOW)
    [found] = findings(rec, "cramp")
    assert found.display == "Muscle cramp"
    # matched by its words only, never by code: no rule may say a Condition is absent beside it
    assert not rec.complete("Condition")


def test_a_string_lab_code_is_not_read_as_no_result():
    raw = {"resourceType": "Observation", "id": "mg", "status": "final", "subject": {"reference": "Patient/p1"},
           "code": "2601-3", "effectiveDateTime": "2026-02-25", "valueQuantity": {"value": 1.9, "unit": "mg/dL"}}
    assert read(raw).data["code"] == {"text": "2601-3"}
    rec = Record("p1", [raw], NOW)
    assert not rec.complete("Observation")
    assert not lab_absent(rec, "magnesium", NOW, 90)
    assert lab_absent(Record("p1", [], NOW), "magnesium", NOW, 90)  # the same call with no such Observation


def test_string_categories_and_body_sites_are_kept_as_text():
    reading = read(cramp(category="problem-list-item", bodySite="left calf"))
    assert reading.data["category"] == [{"text": "problem-list-item"}]
    assert reading.data["bodySite"] == [{"text": "left calf"}]
    assert not validation_errors(reading.data)


def test_a_draft_order_whose_code_was_a_string_is_not_known_for_sure():
    draft = {"resourceType": "ServiceRequest", "id": "d", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "code": "Referral to clinic"}
    rec = Record("p1", [], NOW)
    read_draft = rec.read(draft)
    assert read_draft["code"] == {"text": "Referral to clinic"}
    assert unnamed_orders([read_draft], rec) == [read_draft]
    named = {**draft, "code": {"text": "Referral to clinic"}}
    assert unnamed_orders([rec.read(named)], rec) == []
