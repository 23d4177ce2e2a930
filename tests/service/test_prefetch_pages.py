"""A prefetched searchset page with a ``next`` link is completed from ``fhirServer`` (same client, checks
and page cap as a fetch) before the key is left incomplete; against a real HTTP server on loopback."""

from __future__ import annotations

import json
import logging
import urllib.request

import pytest

from cdshooks import create_app
from cdshooks.fhir.client import FhirClient
from cdshooks.service.prefetch import gather

from ..conftest import CheckedClient, hook_request, make_settings
from ..fault_fhir import create_app as fault_app
from ..fault_fhir import faults
from ..loopback import serve_wsgi

PATIENT = "respiratory-involvement-resolved"  # four conditions: two pages of two on /paged/fhir
TEMPLATES = {"conditions": "Condition?patient={{context.patientId}}&_count=100"}


@pytest.fixture(scope="module")
def server():
    app = fault_app()
    with serve_wsgi(app) as base:
        yield base, faults(app)


def first_page(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/paged/fhir/Condition?patient={PATIENT}&_count=100", timeout=10) as resp:
        page = json.loads(resp.read())
    assert len(page["entry"]) == 2 and any(link["relation"] == "next" for link in page["link"])
    return page


def ids(bundle: dict) -> list[str]:
    return sorted(e["resource"]["id"] for e in bundle["entry"])


def run(base: str, page: dict, tmp_path, client: bool = True, **settings):
    s = make_settings(tmp_path, **settings)
    request = {"context": {"patientId": PATIENT}, "prefetch": {"conditions": page}}
    return gather(TEMPLATES, request, s, FhirClient(f"{base}/paged/fhir", s) if client else None)


def test_the_next_pages_of_a_prefetched_page_are_read(server, tmp_path):
    base, log = server
    page = first_page(base)
    log.clear()
    out = run(base, page, tmp_path)
    assert len(out.values["conditions"]["entry"]) == 4 and len(set(ids(out.values["conditions"]))) == 4
    assert "conditions" not in out.incomplete and out.followed == ["conditions"]
    assert out.incomplete_types == set()
    assert len(log.seen("paged")) == 1  # the client's page counts as the first: one more page read


def test_the_page_cap_counts_the_clients_page(server, tmp_path):
    base, log = server
    page = first_page(base)
    log.clear()
    out = run(base, page, tmp_path, fetch_page_cap=1)
    assert out.values["conditions"]["entry"] == page["entry"] and "conditions" in out.incomplete
    assert log.seen("paged") == [] and out.incomplete_types == {"Condition"}


def test_without_a_fhir_server_the_page_stays_incomplete(server, tmp_path):
    base, _ = server
    page = first_page(base)
    out = run(base, page, tmp_path, client=False)
    assert out.values["conditions"] is page and out.incomplete == {"conditions"} and out.followed == []


def test_a_next_link_outside_fhir_server_is_not_followed(server, tmp_path):
    base, log = server
    page = first_page(base)
    page["link"] = [{"relation": "next", "url": "http://127.0.0.2:9/steal?page=2"}]
    log.clear()
    out = run(base, page, tmp_path)
    assert ids(out.values["conditions"]) == ids(page) and "conditions" in out.incomplete
    assert log.seen() == []


def test_a_later_page_that_fails_keeps_the_key_incomplete_not_412(server, tmp_path):
    base, log = server
    page = first_page(base)
    page["link"] = [{"relation": "next", "url": f"{base}/paged/fhir/Condition?patient={PATIENT}&_offset=bogus"}]
    out = run(base, page, tmp_path)
    assert ids(out.values["conditions"]) == ids(page) and "conditions" in out.incomplete


def test_a_hook_call_with_a_paged_prefetch_is_whole_after_following(server, tmp_path, caplog):
    base, log = server
    patient = "hamstring-twitch-care-text-site"  # four observations: pages of two on /paged/fhir
    app = create_app(make_settings(tmp_path, fhir_servers=(base,)))
    service = app.extensions["cdshooks"].engine.services["fasciculation-patient-view"]
    prefetch = {}
    for key, template in service.prefetch.items():
        query = template.replace("{{context.patientId}}", patient)
        with urllib.request.urlopen(f"{base}/paged/fhir/{query}", timeout=10) as resp:
            prefetch[key] = json.loads(resp.read())  # the first page of each, as a client that does not page
    assert any(link["relation"] == "next" for link in prefetch["observations"].get("link", []))

    def answered(body: dict) -> dict:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cdshooks"):
            assert CheckedClient(app).hook("fasciculation-patient-view", body).status_code == 200
        return next(r for r in caplog.records if r.getMessage() == "hook.answered").fields

    body = hook_request("patient-view", patient_id=patient, prefetch=prefetch, fhirServer=f"{base}/paged/fhir")
    assert answered(body)["incomplete_keys"] == []
    # the same call without a fhirServer: the pages are used as sent, the keys are incomplete
    body.pop("fhirServer")
    assert "observations" in answered(body)["incomplete_keys"]


def test_a_supplementary_key_is_fetched_and_a_failure_leaves_it_incomplete(server, tmp_path):
    base, _ = server
    s = make_settings(tmp_path)
    templates = {"labReports": "DiagnosticReport?patient={{context.patientId}}&category=LAB&_sort=-date&_count=50"}
    request = {"context": {"patientId": PATIENT}, "prefetch": {}}
    out = gather(templates, request, s, FhirClient(f"{base}/fhir", s))
    assert out.values["labReports"]["resourceType"] == "Bundle" and out.incomplete == set()
    failed = gather(templates, request, s, FhirClient(f"{base}/error500/fhir", s))  # no DataUnavailable
    assert "labReports" not in failed.values and failed.incomplete == {"labReports"}
    assert failed.incomplete_types == {"DiagnosticReport"}
