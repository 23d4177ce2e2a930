"""Production needs its public URL and an https allowlist; development follows the host and port served;
fhirServer routes; feedback sent to the wrong service's URL."""

from __future__ import annotations

import uuid

import pytest

from cdshooks.config import ConfigError, Settings
from cdshooks.fhir.client import FhirClient, own_fhir, routed

from ..conftest import empty_prefetch, hook_request

PROD = dict(env="production", public_url="https://cds.example.org", fhir_servers=("https://fhir.example.org/r4",))


def test_production_starts_with_its_public_url_and_an_https_allowlist():
    assert Settings(**PROD).checked().production


@pytest.mark.parametrize("change, names", [
    ({"public_url": ""}, "CDSHOOKS_PUBLIC_URL"),
    ({"public_url": "http://cds.example.org"}, "CDSHOOKS_PUBLIC_URL"),
    ({"fhir_servers": ()}, "CDSHOOKS_FHIR_SERVERS"),
    ({"fhir_servers": ("https://fhir.example.org", "http://fhir.example.org")}, "http://fhir.example.org"),
    ({"fhir_routes": ("https://fhir.example.org=http://10.0.0.5:8080",)}, "CDSHOOKS_FHIR_ROUTES"),
])
def test_production_refuses_to_start_without_them(change, names):
    with pytest.raises(ConfigError, match=names):
        Settings(**(PROD | change)).checked()


def test_from_env_reads_routes_and_refuses_malformed_ones():
    s = Settings.from_env({"CDSHOOKS_FHIR_ROUTES": "http://localhost:8090/fhir=http://hapi:8080/fhir"})
    assert s.fhir_routes == ("http://localhost:8090/fhir=http://hapi:8080/fhir",)
    with pytest.raises(ConfigError, match="CDSHOOKS_FHIR_ROUTES"):
        Settings.from_env({"CDSHOOKS_FHIR_ROUTES": "http://localhost:8090/fhir"})


@pytest.mark.parametrize("url, ok", [
    ("http://127.0.0.1:8123/fhir", True),
    ("http://localhost:8123/fhir/", True),
    ("http://[::1]:8123/fhir", True),
    ("http://127.0.0.1:8124/fhir", False),        # another port
    ("http://127.0.0.1:8123/other", False),       # another path
    ("http://example.org:8123/fhir", False),      # not this machine
    ("http://u:p@127.0.0.1:8123/fhir", False),
])
def test_own_fhir_is_any_loopback_name_at_the_port_served(url, ok):
    assert own_fhir(url, "127.0.0.1", 8123) is ok


def test_own_fhir_on_a_specific_bound_address():
    assert own_fhir("http://cds.lan:8123/fhir", "cds.lan", 8123)
    assert not own_fhir("http://cds.lan:8123/fhir", "0.0.0.0", 8123)


def test_own_fhir_is_not_allowed_in_production():
    settings = Settings(**PROD, port=8123).checked()
    assert FhirClient.for_request({"fhirServer": "http://127.0.0.1:8123/fhir"}, settings) is None
    dev = Settings(port=8123).checked()
    assert FhirClient.for_request({"fhirServer": "http://127.0.0.1:8123/fhir"}, dev) is not None


def test_a_route_takes_the_call_to_the_internal_address_with_its_token():
    settings = Settings(fhir_servers=("http://localhost:8090/fhir",),
                        fhir_routes=("http://localhost:8090/fhir=http://hapi:8080/fhir",)).checked()
    client = FhirClient.for_request({"fhirServer": "http://localhost:8090/fhir/",
                                     "fhirAuthorization": {"access_token": "t"}}, settings)
    assert client is not None and client.base == "http://hapi:8080/fhir"
    assert routed("http://elsewhere.example.org/fhir", settings.fhir_routes) == "http://elsewhere.example.org/fhir"
    # the route does not widen the allowlist
    assert FhirClient.for_request({"fhirServer": "http://hapi:8080/fhir"}, settings) is None


def test_feedback_sent_to_another_services_url_is_refused_and_not_stored(app, client):
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    store = app.extensions["cdshooks"].store
    from cdshooks.store import IssuedCard

    card = str(uuid.uuid4())
    store.record_issued("fasciculation-patient-view", body["hookInstance"],
                        [IssuedCard(card, "electrolyte-check", "info", [])])
    item = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
            "overrideReason": {"userComment": "n/a"}}
    wrong = client.post("/cds-services/fasciculation-order-sign/feedback", json={"feedback": [item]})
    assert wrong.status_code == 400
    outcome = wrong.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["feedback[0].card"]
    assert "fasciculation-patient-view" in outcome["issue"][0]["diagnostics"]
    assert store.feedback_rows() == []
    right = client.post("/cds-services/fasciculation-patient-view/feedback/", json={"feedback": [item]})
    assert right.status_code == 200 and right.get_json()["stored"] == 1
