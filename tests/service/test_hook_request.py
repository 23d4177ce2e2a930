"""Scenario requests: what build_request sends, prefetch computed from the templates, and its next links."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import requests
from flask import Flask

from cdshooks.cards.registry import DATA_KEYS
from cdshooks.fhir.bundles import collection, load_bundle
from cdshooks.service.hook_request import build_request
from cdshooks.service.prefetch import templates_for
from cdshooks.service.validation import validator
from cdshooks.tryit.fhir_endpoint import blueprint
from cdshooks.tryit.fixtures import FIXTURES_DIR, for_scenario, scenarios

from ..loopback import serve_wsgi

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
DEMO = "demo-twitching-weakness"
BACLOFEN = f"MedicationRequest/{DEMO}-baclofen"

# The templates our service would declare for rules reading these value sets.
TEMPLATES = templates_for([SimpleNamespace(reads={
    "conditions": ("fasciculation", "muscle_weakness"),
    "observations": ("potassium_lab",),
    "medicationRequests": (),
    "medicationStatements": (),
    "serviceRequests": (),
})])


@pytest.fixture
def bundle() -> dict:
    return load_bundle(FIXTURES_DIR / "demo-twitching-weakness.json", NOW)


def entry_ids(value: dict) -> list[str]:
    return [e["resource"]["id"] for e in value["entry"]]


def assert_valid(request: dict) -> None:
    errors = [e.message for e in validator("hook-request").iter_errors(request)]
    errors += [e.message for e in validator(f"context-{request['hook']}").iter_errors(request["context"])]
    assert errors == []


def test_patient_view_request(bundle):
    request = build_request(bundle, "patient-view", TEMPLATES, now=NOW)
    assert_valid(request)
    assert uuid.UUID(request["hookInstance"])
    assert request["context"] == {"userId": "Practitioner/example", "patientId": DEMO}
    assert "fhirServer" not in request
    assert set(request["prefetch"]) == set(TEMPLATES)
    conditions = request["prefetch"]["conditions"]
    assert conditions["type"] == "searchset" and conditions["total"] == 2
    assert entry_ids(conditions) == [f"{DEMO}-weakness", f"{DEMO}-fasciculation"]  # newest recorded first
    observations = request["prefetch"]["observations"]
    assert entry_ids(observations) == [f"{DEMO}-potassium"]
    assert observations["entry"][0]["resource"]["effectiveDateTime"] == "2025-02-26T12:00:00Z"


def test_draft_orders_are_not_in_the_record(bundle):
    request = build_request(bundle, "patient-view", {"all": "MedicationRequest?patient={{context.patientId}}"},
                            now=NOW)
    assert request["prefetch"]["all"]["total"] == 0


def test_templates_with_unfilled_tokens_are_left_out_and_reads_give_the_resource(bundle):
    request = build_request(bundle, "patient-view", {
        "encounter": "Encounter/{{context.encounterId}}",
        "patient": "Patient/{{context.patientId}}",
        "practitioner": "Practitioner/{{userPractitionerId}}",
    }, now=NOW)
    assert set(request["prefetch"]) == {"patient"}
    assert request["prefetch"]["patient"]["id"] == DEMO


def test_no_template_resolves_means_no_prefetch_member(bundle):
    request = build_request(bundle, "patient-view", {"encounter": "Encounter?_id={{context.encounterId}}"}, now=NOW)
    assert "prefetch" not in request


def test_order_select_request(bundle):
    request = build_request(bundle, "order-select", TEMPLATES, now=NOW, hook_instance="fixed")
    assert_valid(request)
    context = request["context"]
    assert request["hookInstance"] == "fixed"
    assert context["draftOrders"]["resourceType"] == "Bundle" and "type" not in context["draftOrders"]
    assert entry_ids(context["draftOrders"]) == [f"{DEMO}-baclofen"]
    assert context["draftOrders"]["entry"][0]["resource"]["authoredOn"] == "2025-03-01T12:00:00Z"
    assert context["selections"] == [BACLOFEN]


def test_order_select_with_explicit_selections_and_orders(bundle):
    order = {"resourceType": "ServiceRequest", "id": "emg", "status": "draft", "intent": "order",
             "code": {"text": "EMG"}, "subject": {"reference": f"Patient/{DEMO}"}}
    request = build_request(bundle, "order-select", TEMPLATES, now=NOW, orders=[order],
                            selections=["ServiceRequest/emg"])
    assert entry_ids(request["context"]["draftOrders"]) == ["emg"]
    assert request["context"]["selections"] == ["ServiceRequest/emg"]


def test_order_sign_request_has_no_selections(bundle):
    request = build_request(bundle, "order-sign", TEMPLATES, now=NOW, user_id="Practitioner/dr-1")
    assert_valid(request)
    assert "selections" not in request["context"]
    assert request["context"]["userId"] == "Practitioner/dr-1"
    assert entry_ids(request["context"]["draftOrders"]) == [f"{DEMO}-baclofen"]


def test_without_prefetch(bundle):
    request = build_request(bundle, "order-sign", TEMPLATES, now=NOW, prefetch=False)
    assert "prefetch" not in request and request["context"]["patientId"] == DEMO


def test_relative_dates_may_still_be_in_the_bundle():
    raw = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p"}},
        {"resource": {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "K"},
                      "subject": {"reference": "Patient/p"}, "effectiveDateTime": "$now-1d"}}]}
    request = build_request(raw, "patient-view", {"obs": "Observation?patient={{context.patientId}}"}, now=NOW)
    assert request["prefetch"]["obs"]["entry"][0]["resource"]["effectiveDateTime"] == "2025-02-28T12:00:00Z"


def test_patient_choice_and_errors(bundle):
    two = collection([{"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"}])
    with pytest.raises(ValueError, match="2 patients"):
        build_request(two, "patient-view", {}, now=NOW)
    assert build_request(two, "patient-view", {}, now=NOW, patient_id="b")["context"]["patientId"] == "b"
    with pytest.raises(ValueError, match="no Patient/c"):
        build_request(two, "patient-view", {}, now=NOW, patient_id="c")
    with pytest.raises(ValueError, match="unknown hook"):
        build_request(bundle, "encounter-start", {}, now=NOW)


def test_prefetch_next_links_work_against_the_dev_endpoint(bundle):
    app = Flask(__name__)
    app.register_blueprint(blueprint([FIXTURES_DIR], clock=lambda: NOW))
    templates = {"conditions": "Condition?patient={{context.patientId}}&_sort=-recorded-date&_count=1"}
    with serve_wsgi(app) as url:
        server = f"{url}/fhir"
        request = build_request(bundle, "patient-view", templates, now=NOW, fhir_server=server)
        assert request["fhirServer"] == server
        first = request["prefetch"]["conditions"]
        assert first["total"] == 2 and entry_ids(first) == [f"{DEMO}-weakness"]
        assert first["entry"][0]["fullUrl"] == f"{server}/Condition/{DEMO}-weakness"
        links = {link["relation"]: link["url"] for link in first["link"]}
        second = requests.get(links["next"], timeout=10).json()
        assert entry_ids(second) == [f"{DEMO}-fasciculation"]
        assert second["entry"][0]["resource"] == first_resource_of(bundle, f"{DEMO}-fasciculation")


def first_resource_of(bundle: dict, rid: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == rid)


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_every_indexed_scenario_builds_a_valid_request(scenario):
    templates = templates_for([SimpleNamespace(reads={key: () for key in DATA_KEYS})])
    request = for_scenario(scenario, templates, now=NOW)
    assert_valid(request)
    assert request["hook"] == scenario.hook and request["context"]["patientId"] == scenario.patient
    if scenario.hook == "order-select":
        drafts = {f"{e['resource']['resourceType']}/{e['resource']['id']}"
                  for e in request["context"]["draftOrders"]["entry"]}
        assert request["context"]["selections"] and set(request["context"]["selections"]) <= drafts
