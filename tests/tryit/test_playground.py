"""The playground's endpoints: the page, the fixture list and Bundles, evaluate, and 404 in production."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cdshooks import create_app
from cdshooks.service.validation import validator
from cdshooks.tryit.fixtures import FIXTURES_DIR, scenarios

from ..conftest import make_settings
from ..probe_rules import ORDERS, POTASSIUM
from ..spec_checks import check_response

DEMO = "demo-twitching-weakness"


@pytest.fixture
def demo_bundle(client) -> dict:
    resp = client.get(f"/playground/fixtures/{DEMO}")
    assert resp.status_code == 200 and resp.mimetype == "application/fhir+json"
    return resp.get_json()


def evaluate(client, body, **params):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/playground/evaluate", query_string=params, data=data,
                       content_type="application/fhir+json")


def outcome_text(resp) -> str:
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


def test_the_page_and_its_assets_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="playground/static/playground.js"' in html and 'href="playground/static/playground.css"' in html
    assert "http://" not in html and "https://" not in html  # nothing loaded from elsewhere
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    script = client.get("/playground/static/playground.js")
    assert script.status_code == 200 and "renderMarkdown" in script.get_data(as_text=True)
    assert client.get("/playground/static/playground.css").status_code == 200


def test_fixture_list_names_every_scenario(client):
    resp = client.get("/playground/fixtures")
    assert resp.status_code == 200
    listed = resp.get_json()["fixtures"]
    expected = scenarios(FIXTURES_DIR)
    assert [f["name"] for f in listed] == [s.name for s in expected]
    demo = next(f for f in listed if f["name"] == DEMO)
    assert demo["hook"] == "patient-view" and demo["patient"] == DEMO and demo["description"]
    select = next(f for f in listed if f["name"] == f"{DEMO}-baclofen-select")
    assert select["selections"] == [f"MedicationRequest/{DEMO}-baclofen"]


def test_fixture_bundle_has_dates_resolved(client, demo_bundle):
    text = json.dumps(demo_bundle)
    assert "$now" not in text and "$today" not in text
    assert demo_bundle["resourceType"] == "Bundle"
    assert {e["resource"]["resourceType"] for e in demo_bundle["entry"]} >= {"Patient", "Observation"}
    missing = client.get("/playground/fixtures/no-such-scenario")
    assert missing.status_code == 404 and "no-such-scenario" in outcome_text(missing)


def test_evaluate_returns_the_request_and_the_response(probe_rules, tmp_path):
    app = create_app(make_settings(tmp_path))
    client = app.test_client()
    bundle = client.get(f"/playground/fixtures/{DEMO}").get_json()
    resp = evaluate(client, bundle, hook="patient-view")
    assert resp.status_code == 200
    body = resp.get_json()
    assert list(validator("hook-request").iter_errors(body["request"])) == []
    assert body["request"]["context"]["patientId"] == DEMO and "prefetch" in body["request"]
    check_response(body["response"])
    probe = [c for c in body["response"]["cards"] if c["source"]["topic"]["code"] == POTASSIUM]
    assert len(probe) == 1 and probe[0]["summary"].startswith("Probe: potassium 3.1 mmol/L")
    # a try is not a clinician's chart: its cards are not recorded as issued
    assert app.extensions["cdshooks"].store.issued(probe[0]["uuid"]) is None
    app.extensions["cdshooks"].store.dispose()


def test_evaluate_replays_now_and_honours_selections(probe_rules, client, demo_bundle):
    two_drafts = json.loads(json.dumps(demo_bundle))
    draft = next(e["resource"] for e in two_drafts["entry"] if e["resource"].get("status") == "draft")
    two_drafts["entry"].append({"resource": {**draft, "id": "second-draft"}})
    resp = evaluate(client, two_drafts, hook="order-select", selections="MedicationRequest/second-draft")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["request"]["context"]["selections"] == ["MedicationRequest/second-draft"]
    judged = [c["summary"] for c in body["response"]["cards"] if c["source"]["topic"]["code"] == ORDERS]
    assert judged == ["Probe: judged MedicationRequest/second-draft"]

    fixed = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p"}},
        {"resource": {"resourceType": "Observation", "id": "k", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                      "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2024-01-10T08:00:00Z",
                      "valueQuantity": {"value": 5.9, "unit": "mmol/L"}}}]}
    then = evaluate(client, fixed, hook="patient-view", now="2024-01-11").get_json()["response"]["cards"]
    assert [c["summary"] for c in then if c["source"]["topic"]["code"] == POTASSIUM] == [
        "Probe: potassium 5.9 mmol/L on 2024-01-10"]
    today = evaluate(client, fixed, hook="patient-view").get_json()["response"]["cards"]
    assert not [c for c in today if c["source"]["topic"]["code"] == POTASSIUM]


TWO_PATIENTS = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": "p"}}, {"resource": {"resourceType": "Patient", "id": "q"}}]}


@pytest.mark.parametrize("body, params, message", [
    ("{oops", {"hook": "patient-view"}, "not JSON"),
    ("", {"hook": "patient-view"}, "empty"),
    ({"entry": []}, {"hook": "patient-view"}, "not FHIR"),
    ({"resourceType": "Observation", "id": "o"}, {"hook": "patient-view"}, "holds no Patient"),
    ({"resourceType": "Patient", "id": "p"}, {"hook": "encounter-start"}, "unknown hook"),
    (TWO_PATIENTS, {"hook": "patient-view"}, "holds 2 patients (p, q); enter one of them in Patient id"),
    (TWO_PATIENTS, {"hook": "patient-view", "patient": "z"}, "holds no Patient/z"),
    ({"resourceType": "Patient", "id": "p"}, {"hook": "order-sign"}, "needs draft orders"),
    ({"resourceType": "Patient", "id": "p"}, {"hook": "patient-view", "now": "soon"}, "not an ISO 8601"),
])
def test_bad_input_is_a_400_outcome(client, body, params, message):
    resp = evaluate(client, body, **params)
    assert resp.status_code == 400
    assert message in outcome_text(resp)


def test_picking_a_patient_of_several(client):
    resp = evaluate(client, TWO_PATIENTS, hook="patient-view", patient="q")
    assert resp.status_code == 200 and resp.get_json()["request"]["context"]["patientId"] == "q"


def test_not_served_in_production(tmp_path):
    app = create_app(make_settings(tmp_path, env="production"))
    client = app.test_client()
    for path in ("/", "/playground/fixtures", f"/playground/fixtures/{DEMO}", "/playground/static/playground.js"):
        assert client.get(path).status_code == 404, path
    assert evaluate(client, {"resourceType": "Patient", "id": "p"}, hook="patient-view").status_code == 404
    app.extensions["cdshooks"].store.dispose()


def test_the_blueprint_refuses_to_serve_in_a_production_app(tmp_path):
    app = create_app(make_settings(tmp_path))
    state = app.extensions["cdshooks"]
    state.settings = dataclasses.replace(state.settings, env="production")  # as if registered by mistake
    client = app.test_client()
    assert client.get("/").status_code == 404
    assert client.get("/playground/fixtures").status_code == 404
    assert evaluate(client, {"resourceType": "Patient", "id": "p"}, hook="patient-view").status_code == 404
    state.store.dispose()


def test_tries_are_not_issued_cards_and_say_what_was_read(app, client, demo_bundle):
    resp = evaluate(client, demo_bundle, hook="patient-view")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["response"]["cards"]
    counts = body["reading"]
    assert counts["patient"] == DEMO and counts["hook"] == "patient-view" and counts["unreadable"] == 0
    assert counts["resources"] == len(demo_bundle["entry"]) == counts["sent"] + counts["dropped"]
    store = app.extensions["cdshooks"].store
    assert all(row["issued"] == 0 for row in store.report()), "a playground try was counted as issued"
    for card in body["response"]["cards"]:
        assert store.issued(card["uuid"]) is None
