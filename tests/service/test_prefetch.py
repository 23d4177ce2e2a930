"""Prefetch: template tokens, and what each kind of prefetch value means."""

from __future__ import annotations

import pytest

from cdshooks import create_app
from cdshooks.service.prefetch import DataUnavailable, expand_template, gather

from ..conftest import make_settings

CONTEXT = {"userId": "PractitionerRole/role 7", "patientId": "p/1", "encounterId": "e1",
           "selections": ["MedicationRequest/x"], "draftOrders": {"resourceType": "Bundle"}}


@pytest.mark.parametrize("template, expected", [
    ("Patient/{{context.patientId}}", "Patient/p/1"),
    ("Encounter/{{ context.encounterId }}", "Encounter/e1"),
    ("Condition?patient={{context.patientId}}&encounter={{context.encounterId}}", "Condition?patient=p/1&encounter=e1"),
    ("{{context.userId}}", "PractitionerRole/role%207"),
    ("PractitionerRole?_id={{userPractitionerRoleId}}", "PractitionerRole?_id=role%207"),
])
def test_tokens_expand(template, expected):
    assert expand_template(template, CONTEXT) == expected


@pytest.mark.parametrize("template", [
    "Practitioner/{{userPractitionerId}}",       # the user is a PractitionerRole
    "Patient/{{userPatientId}}",
    "RelatedPerson/{{userRelatedPersonId}}",
    "MedicationRequest/{{context.selections}}",  # not a primitive
    "Bundle/{{context.draftOrders}}",
    "Encounter/{{context.missing}}",
    "X/{{context.draftOrders.id}}",              # nested paths are not tokens
])
def test_tokens_without_a_value_leave_the_template_unexpandable(template):
    assert expand_template(template, CONTEXT) is None


def test_user_tokens_follow_the_user_type():
    assert expand_template("Practitioner/{{userPractitionerId}}", {"userId": "Practitioner/abc"}) == "Practitioner/abc"
    assert expand_template("Patient/{{userPatientId}}", {"userId": "Patient/me"}) == "Patient/me"


def test_gather_uses_present_values_and_null_as_no_data(tmp_path):
    settings = make_settings(tmp_path)
    templates = {"a": "Condition?patient={{context.patientId}}", "b": "Observation?patient={{context.patientId}}"}
    bundle = {"resourceType": "Bundle", "type": "searchset"}
    out = gather(templates, {"context": {"patientId": "p"}, "prefetch": {"a": bundle, "b": None}}, settings)
    assert out.values == {"a": bundle, "b": None} and out.fetched == []


def test_gather_without_a_client_names_every_missing_key(tmp_path):
    settings = make_settings(tmp_path)
    templates = {"a": "Condition?patient={{context.patientId}}", "b": "Observation?patient={{context.patientId}}",
                 "c": "Procedure?patient={{context.patientId}}"}
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    with pytest.raises(DataUnavailable) as err:
        gather(templates, {"context": {"patientId": "p"}, "prefetch": {"a": None, "b": outcome}}, settings)
    assert err.value.keys == ["b", "c"]


def test_fhir_endpoint_is_not_served_in_production(tmp_path):
    dev = create_app(make_settings(tmp_path / "dev")).test_client()
    assert dev.get("/fhir/metadata").status_code == 200
    prod = create_app(make_settings(tmp_path / "prod", env="production")).test_client()
    resp = prod.get("/fhir/metadata")
    assert resp.status_code == 404 and resp.get_json()["resourceType"] == "OperationOutcome"
