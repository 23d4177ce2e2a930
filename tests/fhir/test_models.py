"""The tolerant reader: faulty elements are repaired or dropped, never the resource; our own output is
checked strictly."""

from __future__ import annotations

import math

import pytest

from cdshooks.fhir.models import invalid_paths, parse, read, validation_errors

SUBJECT = {"reference": "Patient/p1"}


def problems(resource: dict) -> list[str]:
    return [str(p) for p in read(resource).problems]


def test_a_valid_resource_is_read_as_it_is():
    res = {"resourceType": "Condition", "id": "c", "subject": SUBJECT, "code": {"text": "Twitching"}}
    reading = read(res)
    assert reading.data is res and reading.model is not None and reading.problems == []


def test_one_object_where_a_list_belongs_is_wrapped():
    res = {"resourceType": "MedicationRequest", "id": "m", "status": "draft", "intent": "order", "subject": SUBJECT,
           "medicationCodeableConcept": {"text": "Baclofen"},
           "category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                    "code": "community"}]}}
    reading = read(res)
    assert reading.model is not None
    assert reading.data["category"] == [res["category"]] and isinstance(res["category"], dict)  # input untouched
    assert problems(res) == ["MedicationRequest.category: wrapped in a list"]


def test_a_one_item_list_where_one_value_belongs_is_unwrapped():
    res = {"resourceType": "Observation", "status": ["final"], "code": {"coding": [{"system": ["http://loinc.org"],
                                                                                    "code": "2823-3"}]}}
    reading = read(res)
    assert reading.data["status"] == "final" and reading.data["code"]["coding"][0]["system"] == "http://loinc.org"
    assert reading.model is not None


@pytest.mark.parametrize("value", [math.nan, math.inf, "abc", {"x": 1}, [1, 2]])
def test_an_unreadable_value_is_dropped_alone(value):
    res = {"resourceType": "Observation", "status": "final", "code": {"text": "Potassium"},
           "valueQuantity": {"value": value, "unit": "mmol/L"}, "effectiveDateTime": "2026-11-01"}
    reading = read(res)
    assert reading.model is not None
    assert reading.data["valueQuantity"] == {"unit": "mmol/L"} and reading.data["effectiveDateTime"] == "2026-11-01"
    assert problems(res) == ["Observation.valueQuantity.value: dropped"]


def test_problems_name_paths_never_values():
    secret = "Jane Doe 1970-01-01"
    res = {"resourceType": "Condition", "subject": SUBJECT, "code": {"coding": [{"system": {"x": secret}}, 5]},
           "onsetDateTime": secret, "note": {"text": 7}}
    text = " ".join(problems(res))
    assert secret not in text and "Condition.onsetDateTime: dropped" in text
    assert "Condition.code.coding[1]: dropped" in text


def test_a_missing_required_element_keeps_the_data_without_a_model():
    res = {"resourceType": "Observation", "code": {"text": "Potassium"}, "extension": 5}
    reading = read(res)
    assert reading.model is None and reading.data == {"resourceType": "Observation", "code": {"text": "Potassium"}}
    assert "Observation.status: missing" in problems(res)


def test_outbound_checks_stay_strict():
    draft = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order", "subject": SUBJECT,
             "medicationCodeableConcept": {"text": "Baclofen"}, "category": {"text": "community"}}
    assert parse(draft) is None and validation_errors(draft) and invalid_paths(draft) == ["category"]
    assert invalid_paths({**draft, "category": [{"text": "community"}]}) == []


def test_unknown_element_names_and_types_from_the_client_are_never_written():
    res = {"resourceType": "Observation", "status": "final", "code": {"text": "k"}, "Jane Doe 1970-01-01": 1,
           "janeDoe": {"x": 1}}
    text = " ".join(problems(res))
    assert "Jane" not in text and "jane" not in text and "Observation.(unknown element): dropped" in text
    assert problems({"resourceType": "Jane Doe"}) == ["Resource.resourceType: unknown"]
