"""The CDS Hooks protocol surface: discovery, hook calls, errors, CORS, feedback, health."""

from __future__ import annotations

import json
import logging

import pytest

from cdshooks import create_app
from cdshooks.cards import registry as rules
from cdshooks.cards.card import Card, render_detail
from cdshooks.service.validation import validator

from ..conftest import CheckedClient, empty_prefetch, hook_request, make_settings

SERVICES = {"patient-view": "fasciculation-patient-view", "order-select": "fasciculation-order-select",
            "order-sign": "fasciculation-order-sign"}


def outcome(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    return body["issue"][0]


# -- discovery ------------------------------------------------------------------------
def test_discovery_lists_one_service_per_hook(client):
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    body = resp.get_json()
    assert not list(validator("discovery").iter_errors(body))
    by_hook = {s["hook"]: s for s in body["services"]}
    assert set(by_hook) == set(SERVICES)
    for hook, service in by_hook.items():
        assert service["id"] == SERVICES[hook]
        for field in ("title", "description", "usageRequirements", "prefetch"):
            assert service[field], field


def test_prefetch_templates_are_narrow(client):
    for service in client.get("/cds-services").get_json()["services"]:
        for key, template in service["prefetch"].items():
            rtype, _, query = template.partition("?")
            params = dict(p.split("=", 1) for p in query.split("&"))
            assert params["patient"] == "{{context.patientId}}", template
            assert int(params["_count"]) <= 200, template
            assert "_sort" in params, template
            if key == "labReports":  # lab reports by category: a panel's own code may be local only
                assert params.get("category", "").endswith("v2-0074%7CLAB"), template
            elif rtype in ("Condition", "Observation", "ServiceRequest", "Procedure", "DiagnosticReport"):
                assert params.get("code"), f"{key} must be filtered by code: {template}"
            else:
                assert params.get("status"), f"{key} must be filtered by status: {template}"
            assert "{{context.draftOrders" not in template and "{{context.selections" not in template


# -- hook calls -----------------------------------------------------------------------
@pytest.mark.parametrize("hook", list(SERVICES))
def test_null_prefetch_means_no_data_and_answers_no_cards(app, client, hook):
    body = hook_request(hook, prefetch=empty_prefetch(app, hook))
    resp = client.hook(SERVICES[hook], body)
    assert resp.status_code == 200
    assert resp.get_json() == {"cards": []}


def test_unknown_fields_and_extensions_are_ignored(app, client):
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"),
                        extension={"com.example.flag": {"x": 1}}, somethingNew=True,
                        context={"encounterId": "e1", "com.example.extra": 3})
    assert client.hook(SERVICES["patient-view"], body).status_code == 200


def test_unknown_service_is_404(client):
    outcome(client.post("/cds-services/nope", json={}), 404)
    outcome(client.post("/cds-services/nope/feedback", json={"feedback": []}), 404)


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.pop("hook"), "hook"),
    (lambda b: b.pop("hookInstance"), "hookInstance"),
    (lambda b: b.pop("context"), "context"),
    (lambda b: b.update(hook="order-sign"), "hook"),
    (lambda b: b["context"].pop("patientId"), "context.patientId"),
    (lambda b: b["context"].pop("userId"), "context.userId"),
    (lambda b: b.update(context="p1"), "context"),
    (lambda b: b.update(fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                           "scope": "patient/*.read", "subject": "svc"}), "fhirServer"),
    (lambda b: b.update(fhirServer="ftp://x"), "fhirServer"),
    (lambda b: b.update(prefetch=[]), "prefetch"),
])
def test_bad_requests_get_400_naming_the_field(client, mutate, field):
    body = hook_request("patient-view", prefetch={})
    mutate(body)
    issue = outcome(client.post("/cds-services/fasciculation-patient-view", json=body), 400)
    assert issue["expression"] == [field]


def test_order_select_requires_selections_and_draft_orders(client):
    body = hook_request("order-select", prefetch={})
    del body["context"]["selections"]
    issue = outcome(client.post("/cds-services/fasciculation-order-select", json=body), 400)
    assert issue["expression"] == ["context.selections"]


@pytest.mark.parametrize("data", [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b"null"])
def test_body_that_is_not_a_json_object_is_400(client, data):
    resp = client.post("/cds-services/fasciculation-patient-view", data=data, content_type="application/json")
    outcome(resp, 400)


def test_wrong_method_is_405_operation_outcome(client):
    outcome(client.get("/cds-services/fasciculation-patient-view"), 405)


def test_body_over_the_limit_is_413(tmp_path):
    app = create_app(make_settings(tmp_path, max_body_bytes=1000))
    resp = app.test_client().post("/cds-services/fasciculation-patient-view", data=b"{" + b" " * 2000 + b"}",
                                  content_type="application/json")
    outcome(resp, 413)


def test_missing_prefetch_without_fhir_server_is_412_naming_keys(app, client):
    prefetch = empty_prefetch(app, "patient-view")
    dropped = sorted(prefetch)[:2]
    for key in dropped:
        del prefetch[key]
    issue = outcome(client.post("/cds-services/fasciculation-patient-view",
                                json=hook_request("patient-view", prefetch=prefetch)), 412)
    assert issue["expression"] == [f"prefetch.{k}" for k in dropped]
    for key in dropped:
        assert key in issue["diagnostics"]


def test_operation_outcome_in_prefetch_is_not_no_data(app, client):
    prefetch = empty_prefetch(app, "patient-view")
    key = sorted(prefetch)[0]
    prefetch[key] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    issue = outcome(client.post("/cds-services/fasciculation-patient-view",
                                json=hook_request("patient-view", prefetch=prefetch)), 412)
    assert issue["expression"] == [f"prefetch.{key}"]


def test_fhir_server_not_allowed_is_412(app, client):
    body = hook_request("patient-view", fhirServer="https://fhir.elsewhere.example/r4")
    issue = outcome(client.post("/cds-services/fasciculation-patient-view", json=body), 412)
    assert "prefetch." in issue["expression"][0]


def test_unexpected_error_is_500_without_internals(app, client, monkeypatch):
    app.config["PROPAGATE_UNEXPECTED"] = False

    def boom(*a, **k):
        raise RuntimeError("secret internal detail /srv/app.py line 12")

    monkeypatch.setattr(app.extensions["cdshooks"].engine, "answer", boom)
    resp = client.post("/cds-services/fasciculation-patient-view", json=hook_request("patient-view"))
    issue = outcome(resp, 500)
    assert "secret" not in resp.get_data(as_text=True)
    assert issue["code"] == "exception"


# -- CORS -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/cds-services", "/cds-services/fasciculation-patient-view",
                                  "/cds-services/fasciculation-patient-view/feedback"])
def test_cors_preflight_succeeds(client, path):
    resp = client.options(path, headers={"Origin": "https://sandbox.cds-hooks.org",
                                         "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization,content-type"})
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]


def test_responses_carry_cors_and_auth_off_headers(client):
    resp = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["X-CDS-Authentication"] == "off"


def test_cors_origin_allowlist(tmp_path):
    app = create_app(make_settings(tmp_path, cors_origins=("https://sandbox.cds-hooks.org",)))
    c = app.test_client()
    ok = c.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    other = c.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


# -- rule isolation ----------------------------------------------------------------------
@pytest.fixture
def extra_rules():
    added = []

    def add(rule_id, fn, hooks=("patient-view",)):
        rules.rule(id=rule_id, title=rule_id, hooks=hooks, indicator="info", reads={},
                   source=rules.Source("000", ("Test",)))(fn)
        added.append(rule_id)

    yield add
    for rule_id in added:
        rules._REGISTRY.pop(rule_id, None)


def _failing(call):
    raise ZeroDivisionError("rule bug")


def _working(call):
    return Card(summary="Test card", indicator="info", detail=render_detail(["a fact"], ["a line"]))


def test_a_failing_rule_does_not_sink_the_others(tmp_path, extra_rules, caplog):
    extra_rules("zz-test-failing", _failing)
    extra_rules("zz-test-working", _working)
    app = create_app(make_settings(tmp_path, strict_rules=False))
    client = CheckedClient(app)
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    with caplog.at_level(logging.ERROR, logger="cdshooks"):
        resp = client.hook("fasciculation-patient-view", body)
    assert resp.status_code == 200
    cards = resp.get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["checks-incomplete", "zz-test-working"]
    # the answer never looks like a clean bill of health: one info card says some checks did not complete
    notice = cards[0]
    assert notice["indicator"] == "info" and notice["summary"] == "Some checks could not be completed for this patient"
    assert "zz-test-failing" in notice["detail"] and "suggestions" not in notice
    failed = [r for r in caplog.records if r.getMessage() == "rule.failed"]
    assert failed and failed[0].fields["rule"] == "zz-test-failing"
    assert failed[0].fields["hook_instance"] == body["hookInstance"]
    assert app.extensions["cdshooks"].engine.rule_failures.counts() == {"zz-test-failing": 1}


def test_the_incomplete_checks_card_can_be_switched_off(tmp_path, extra_rules):
    extra_rules("zz-test-failing", _failing)
    app = create_app(make_settings(tmp_path, strict_rules=False, rule_failure_card=False))
    resp = CheckedClient(app).hook("fasciculation-patient-view",
                                   hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view")))
    assert resp.status_code == 200 and resp.get_json()["cards"] == []
    assert app.extensions["cdshooks"].engine.rule_failures.total == 1


def test_strict_mode_reraises_rule_errors(tmp_path, extra_rules):
    extra_rules("zz-test-failing", _failing)
    app = create_app(make_settings(tmp_path, strict_rules=True))
    app.testing = True
    app.config["PROPAGATE_UNEXPECTED"] = True
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    with pytest.raises(ZeroDivisionError):
        app.test_client().post("/cds-services/fasciculation-patient-view", json=body)


# -- feedback ---------------------------------------------------------------------------
def _issue_card(tmp_path, extra_rules):
    extra_rules("zz-test-working", _working)
    app = create_app(make_settings(tmp_path))
    client = CheckedClient(app)
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    card = next(c for c in client.hook("fasciculation-patient-view", body).get_json()["cards"]
                if c["source"]["topic"]["code"] == "zz-test-working")
    return app, client, card, body["hookInstance"]


def test_feedback_is_stored_with_the_issuing_rule_and_not_duplicated(tmp_path, extra_rules):
    app, client, card, hook_instance = _issue_card(tmp_path, extra_rules)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31.828Z",
            "overrideReason": {"reason": {"system": card["overrideReasons"][0]["system"],
                                          "code": card["overrideReasons"][0]["code"]}, "userComment": "seen"}}
    first = client.post("/cds-services/fasciculation-patient-view/feedback", json={"feedback": [item]})
    assert first.status_code == 200 and first.get_json()["stored"] == 1
    again = client.post("/cds-services/fasciculation-patient-view/feedback", json={"feedback": [item, item]})
    assert again.get_json() == {"stored": 0, "duplicates": 2, "unknownCards": 0}
    rows = app.extensions["cdshooks"].store.feedback_rows()
    assert len(rows) == 1
    row = rows[0]
    assert (row["rule_id"], row["hook_instance"], row["outcome"], row["override_code"]) == (
        "zz-test-working", hook_instance, "overridden", "already-addressed")
    report = app.extensions["cdshooks"].store.report()
    assert {"rule": "zz-test-working", "issued": 1, "accepted": 0, "overridden": 1,
            "topOverrideReasons": [("already-addressed", 1)]} in report


@pytest.mark.parametrize("item, field", [
    ({"outcome": "accepted", "outcomeTimestamp": "2026-11-21T10:05:31Z"}, "feedback.0.card"),
    ({"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-21T10:05:31Z"}, "feedback.0.acceptedSuggestions"),
    ({"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-11-21T10:05:31Z"}, "feedback.0.outcome"),
    ({"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}, "feedback.0.outcomeTimestamp"),
])
def test_bad_feedback_is_400(client, item, field):
    issue = outcome(client.post("/cds-services/fasciculation-patient-view/feedback", json={"feedback": [item]}), 400)
    assert issue["expression"] == [field]


def test_feedback_for_an_unknown_card_is_counted(client):
    item = {"card": "not-ours", "outcome": "accepted", "acceptedSuggestions": [{"id": "s"}],
            "outcomeTimestamp": "2026-11-21T10:05:31Z"}
    resp = client.post("/cds-services/fasciculation-patient-view/feedback", json={"feedback": [item]})
    assert resp.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 1}


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok"


def test_every_error_body_is_json(client):
    for resp in (client.get("/no/such/path"), client.put("/cds-services")):
        assert resp.is_json
        assert json.loads(resp.get_data())["resourceType"] == "OperationOutcome"
