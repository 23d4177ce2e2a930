"""The OpenAPI 3.1 document at /openapi.json: built from the shipped JSON Schemas, it accepts and
refuses what the service accepts and refuses, and the service's answers fit it. Then schemathesis
drives the running app from it (a bounded run): no 5xx, no answer outside the contract."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator

from cdshooks import create_app
from cdshooks.service.openapi import SCHEMA_COMPONENTS
from cdshooks.service.validation import validator

from ..conftest import empty_prefetch, hook_request, make_settings

SERVICES = ("fasciculation-patient-view", "fasciculation-order-select", "fasciculation-order-sign")


@pytest.fixture
def doc(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


def _validator(doc: dict, schema: dict) -> Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return Draft202012Validator({"components": doc["components"], **schema})


def _request_schema(doc: dict, sid: str) -> dict:
    return doc["paths"][f"/cds-services/{sid}"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def _response_schema(doc: dict, path: str, method: str, status: str = "200") -> dict:
    return doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


def test_it_is_openapi_3_1_with_every_shipped_schema(doc):
    assert doc["openapi"] == "3.1.0"
    shipped = {p.name[:-5] for p in resources.files("cdshooks.service.schemas").iterdir() if p.name.endswith(".json")}
    assert shipped == set(SCHEMA_COMPONENTS), "a schema file is not in the OpenAPI document"
    for file, name in SCHEMA_COMPONENTS.items():
        component = doc["components"]["schemas"][name]
        Draft202012Validator.check_schema(component)
        original = json.loads(resources.files("cdshooks.service.schemas").joinpath(f"{file}.json").read_text())
        assert component.get("required") == original.get("required")
        assert set(component.get("properties", {})) == set(original.get("properties", {}))
    for sid in SERVICES:
        assert f"/cds-services/{sid}" in doc["paths"] and f"/cds-services/{sid}/feedback" in doc["paths"]
    assert doc["components"]["securitySchemes"]["clientJwt"]["scheme"] == "bearer"


@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
def test_requests_the_service_accepts_fit_the_contract_and_refused_ones_do_not(app, doc, hook):
    sid = f"fasciculation-{hook}"
    check = _validator(doc, _request_schema(doc, sid))
    good = hook_request(hook, prefetch=empty_prefetch(app, hook))
    assert check.is_valid(good)
    assert not list(validator("hook-request").iter_errors(good))
    bad = [
        {k: v for k, v in good.items() if k != "context"},
        {**good, "hook": "patient-view" if hook != "patient-view" else "order-sign"},
        {**good, "context": {k: v for k, v in good["context"].items() if k != "patientId"}},
        {**good, "fhirAuthorization": {"access_token": "x", "token_type": "Bearer", "expires_in": 1, "scope": "s",
                                       "subject": "s"}},
    ]
    for body in bad:
        assert not check.is_valid(body)
        client = app.test_client()
        assert client.post(f"/cds-services/{sid}", json=body).status_code == 400


def test_the_services_answers_fit_the_contract(app, client, doc):
    discovery = client.get("/cds-services").get_json()
    assert _validator(doc, _response_schema(doc, "/cds-services", "get")).is_valid(discovery)
    from cdshooks.tryit.fixtures import for_scenario, scenarios

    scenario = next(s for s in scenarios() if s.name == "demo-twitching-weakness")
    service = app.extensions["cdshooks"].engine.services[f"fasciculation-{scenario.hook}"]
    resp = client.hook(service.id, for_scenario(scenario, service.prefetch))
    assert resp.status_code == 200 and resp.get_json()["cards"]
    errors = list(_validator(doc, _response_schema(doc, f"/cds-services/{service.id}", "post"))
                  .iter_errors(resp.get_json()))
    assert not errors, errors[0].message
    bad = client.post(f"/cds-services/{service.id}", data=b"[")
    assert _validator(doc, _response_schema(doc, f"/cds-services/{service.id}", "post", "400")).is_valid(bad.get_json())


def test_the_document_names_the_public_url(tmp_path):
    app = create_app(make_settings(tmp_path, public_url="https://cds.example.org"))
    assert app.test_client().get("/openapi.json").get_json()["servers"] == [{"url": "https://cds.example.org"}]


# -- schemathesis: the running app driven from the document ---------------------------------------

def _contract_app():
    """The app schemathesis drives: test settings, a SQLite file in a temporary folder kept for the run."""
    folder = Path(tempfile.mkdtemp(prefix="cdshooks-openapi-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    app = create_app(make_settings(folder, log_level="WARNING"))
    return app


schema = schemathesis.openapi.from_wsgi("/openapi.json", _contract_app())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
def test_api_contract(case):
    """About 40 examples per operation, 9 operations: no 5xx, status codes, content types and bodies as documented."""
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance, negative_data_rejection])
