"""The FHIR fallback against a real HTTP server on loopback: success, paging, and every failure
turning into 'data not obtainable' (412), promptly, with the bearer token going nowhere else."""

from __future__ import annotations

import logging
import time

import pytest
from flask import Flask, jsonify

from cdshooks import create_app
from cdshooks.fhir.client import FetchError, FhirClient, allowed_server

from ..conftest import CheckedClient, hook_request, make_settings
from ..fault_fhir import GOOD_TOKEN, faults
from ..fault_fhir import create_app as fault_app
from ..loopback import serve_wsgi

PATIENT = "demo-twitching-weakness"


@pytest.fixture(scope="module")
def server():
    app = fault_app()
    with serve_wsgi(app) as base:
        yield base, faults(app)


@pytest.fixture
def log(server):
    server[1].clear()
    return server[1]


def client_for(base, settings, token=None):
    return FhirClient(base, settings, token)


QUERY = "Condition?patient=respiratory-involvement-resolved&_count=100"  # four conditions: two pages of two


def test_search_returns_a_searchset(server, tmp_path, log):
    base, _ = server
    out = client_for(f"{base}/fhir", make_settings(tmp_path)).search_many({"conditions": QUERY})
    bundle = out["conditions"]
    assert bundle["resourceType"] == "Bundle"
    codes = {c["code"] for e in bundle["entry"] for c in e["resource"]["code"]["coding"]}
    assert "82470000" in codes


def test_next_pages_are_followed_up_to_the_cap(server, tmp_path, log):
    base, _ = server
    full = client_for(f"{base}/fhir", make_settings(tmp_path)).search_many({"k": QUERY})["k"]
    paged = client_for(f"{base}/paged/fhir", make_settings(tmp_path, fetch_page_cap=10)).search_many({"k": QUERY})["k"]
    assert len(full["entry"]) > 2, "the patient needs more than one page of conditions"
    assert sorted(e["resource"]["id"] for e in paged["entry"]) == sorted(e["resource"]["id"] for e in full["entry"])
    assert len(log.seen("paged")) > 1
    log.clear()
    capped = client_for(f"{base}/paged/fhir", make_settings(tmp_path, fetch_page_cap=1)).search_many({"k": QUERY})["k"]
    assert len(capped["entry"]) == 2 and len(log.seen("paged")) == 1
    assert capped.get("_truncated") is True and "_truncated" not in paged  # cut at the cap: incomplete, not whole


def test_a_search_cut_at_the_page_cap_is_incomplete_in_the_hook(server, tmp_path, caplog):
    base, _ = server
    app = create_app(make_settings(tmp_path, fetch_page_cap=1, fhir_servers=(base,)))
    body = hook_request("patient-view", patient_id="hamstring-twitch-care-text-site", fhirServer=f"{base}/paged/fhir")
    with caplog.at_level(logging.INFO, logger="cdshooks"):
        resp = CheckedClient(app).hook("fasciculation-patient-view", body)
    assert resp.status_code == 200
    answered = next(r for r in caplog.records if r.getMessage() == "hook.answered")
    assert "observations" in answered.fields["incomplete_keys"]  # four observations, pages of two, one page


@pytest.mark.parametrize("variant, reason", [
    ("error500", "HTTP 500"), ("unauthorized", "HTTP 401"), ("malformed", "malformed JSON"),
    ("outcome", "server answered with an OperationOutcome"), ("redirect", "HTTP 302"),
])
def test_failures_are_fetch_errors(server, tmp_path, log, variant, reason):
    base, _ = server
    with pytest.raises(FetchError) as err:
        client_for(f"{base}/{variant}/fhir", make_settings(tmp_path)).search_many({"conditions": QUERY, "x": QUERY})
    assert err.value.reason == reason
    assert err.value.keys == ["conditions", "x"]
    deadline = time.monotonic() + 5  # the call ends at the first failure: let the other request land
    while len(log.seen(variant)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)


def test_redirects_are_not_followed(server, tmp_path, log):
    base, _ = server
    with pytest.raises(FetchError):
        client_for(f"{base}/redirect/fhir", make_settings(tmp_path), "secret").search_many({"k": QUERY})
    seen = [r.variant for r in log.seen()]
    assert "redirect" in seen and set(seen) == {"redirect"}, "nothing was fetched from the redirect target"


def test_bearer_token_is_sent_to_the_fhir_server(server, tmp_path, log):
    base, _ = server
    out = client_for(f"{base}/unauthorized/fhir", make_settings(tmp_path), GOOD_TOKEN).search_many({"k": QUERY})
    assert out["k"]["entry"]
    assert all(r.authorization for r in log.seen("unauthorized"))


def test_oversized_response_is_refused(server, tmp_path, log):
    base, state = server
    state.huge_bytes = 300_000
    with pytest.raises(FetchError) as err:
        client_for(f"{base}/huge/fhir", make_settings(tmp_path, fetch_max_bytes=100_000)).search_many({"k": QUERY})
    assert err.value.reason == "response too large"


def test_slow_server_hits_the_deadline_promptly(server, tmp_path, log):
    base, state = server
    state.slow_seconds = 3.0
    settings = make_settings(tmp_path, fetch_timeout=5.0, call_budget=0.4)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        client_for(f"{base}/slow/fhir", settings).search_many({"k": QUERY, "j": QUERY},
                                                               deadline=time.monotonic() + 0.4)
    assert time.monotonic() - started < 1.0
    assert err.value.reason == "timed out"


def test_next_link_to_another_server_is_refused(tmp_path):
    rogue = Flask("rogue")

    @rogue.get("/fhir/Condition")
    def page():
        return jsonify({"resourceType": "Bundle", "type": "searchset", "entry": [],
                        "link": [{"relation": "next", "url": "http://127.0.0.2:9/steal?page=2"}]})

    with serve_wsgi(rogue) as base:
        out = FhirClient(f"{base}/fhir", make_settings(tmp_path), "secret").search_many({"k": "Condition?x=1"})
    # not followed: the key keeps what it has and is marked incomplete, never "no data"
    assert out["k"]["_truncated"] is True and out["k"]["entry"] == []


@pytest.mark.parametrize("url, allowlist, allow_http, ok", [
    ("https://ehr.example.org/fhir/r4", ("https://ehr.example.org/fhir",), False, True),
    ("https://ehr.example.org/fhirx", ("https://ehr.example.org/fhir",), False, False),
    ("https://ehr.example.org:8443/fhir", ("https://ehr.example.org/fhir",), False, False),
    ("https://EHR.example.org:443/fhir/", ("https://ehr.example.org/fhir",), False, True),
    ("http://ehr.example.org/fhir", ("http://ehr.example.org/fhir",), False, False),
    ("http://ehr.example.org/fhir", ("http://ehr.example.org/fhir",), True, True),
    ("http://127.0.0.1:8080/fhir", ("http://127.0.0.1:8080/fhir",), False, True),
    ("http://[::1]:8080/fhir", ("http://[::1]:8080/fhir",), False, True),
    ("https://user:pw@ehr.example.org/fhir", ("https://ehr.example.org/fhir",), False, False),
    ("file:///etc/passwd", ("file:///etc",), False, False),
    ("https://ehr.example.org/fhir", (), False, False),
])
def test_allowlist(url, allowlist, allow_http, ok):
    assert allowed_server(url, allowlist, allow_http) is ok


# -- through the hook endpoint ----------------------------------------------------------
def call(tmp_path, fhir_server, **settings):
    app = create_app(make_settings(tmp_path, **settings))
    body = hook_request("patient-view", patient_id=PATIENT, fhirServer=fhir_server)
    return CheckedClient(app).hook("fasciculation-patient-view", body)


def test_hook_without_prefetch_fetches_from_fhir_server(server, tmp_path, log):
    base, _ = server
    resp = call(tmp_path, f"{base}/fhir", fhir_servers=(base,))
    assert resp.status_code == 200
    assert {r.path.split("/")[-1] for r in log.seen("fhir")} >= {"Condition", "Observation"}


@pytest.mark.parametrize("variant", ["error500", "unauthorized", "malformed", "outcome", "redirect"])
def test_hook_answers_412_when_the_fallback_fails(server, tmp_path, log, variant):
    base, _ = server
    resp = call(tmp_path, f"{base}/{variant}/fhir", fhir_servers=(base,))
    assert resp.status_code == 412
    assert resp.get_json()["issue"][0]["expression"][0].startswith("prefetch.")


def test_hook_answers_412_within_the_budget_when_the_server_hangs(server, tmp_path, log):
    base, state = server
    state.slow_seconds = 5.0
    started = time.monotonic()
    resp = call(tmp_path, f"{base}/slow/fhir", fhir_servers=(base,), call_budget=0.5, fetch_timeout=2.0)
    assert resp.status_code == 412
    assert time.monotonic() - started < 1.5


def test_server_not_in_the_allowlist_is_never_contacted(server, tmp_path, log):
    base, _ = server
    resp = call(tmp_path, f"{base}/fhir", fhir_servers=("https://ehr.example.org/fhir",))
    assert resp.status_code == 412
    assert log.seen() == []


def test_optional_keys_run_beside_the_others_and_never_fail_the_call(server, tmp_path, log):
    """Supplementary searches (``optional``) go in the same parallel round as the required ones; one
    that fails or is late is left out, and the required ones still answer."""
    base, state = server
    settings = make_settings(tmp_path)
    state.slow_seconds = 0.4
    slow = f"{base}/slow/fhir"
    started = time.monotonic()
    out = client_for(slow, settings).search_many({"k": QUERY, "j": QUERY, "opt": QUERY}, optional={"opt"})
    took = time.monotonic() - started
    assert set(out) == {"k", "j", "opt"}
    assert took < 0.4 * 2, f"the three searches ran one after another ({took:.2f} s)"
    failing = client_for(f"{base}/error500/fhir", settings)
    assert failing.search_many({"opt": QUERY}, optional={"opt"}) == {}
    with pytest.raises(FetchError) as caught:
        failing.search_many({"k": QUERY, "opt": QUERY}, optional={"opt"})
    assert caught.value.keys == ["k"]
    late = client_for(slow, settings).search_many({"k": "Patient?_id=" + PATIENT, "opt": QUERY + "&_delay=3"},
                                                  deadline=time.monotonic() + 1.0, optional={"opt"})
    assert "opt" not in late


def test_a_hook_fetches_lab_reports_in_the_same_round_as_the_rest(server, tmp_path, log):
    """Without prefetch, the supplementary lab-report search does not add a round-trip: the call
    against a server that takes 0.4 s per search takes about one such wait, not two."""
    base, state = server
    state.slow_seconds = 0.4
    app = create_app(make_settings(tmp_path, fhir_servers=(base,), fetch_per_server=16))
    body = hook_request("patient-view", patient_id=PATIENT, fhirServer=f"{base}/slow/fhir")
    started = time.monotonic()
    resp = CheckedClient(app).hook("fasciculation-patient-view", body)
    took = time.monotonic() - started
    app.extensions["cdshooks"].store.dispose()
    assert resp.status_code == 200
    assert any(r.path.endswith("/DiagnosticReport") for r in log.seen("slow")), "lab reports were searched"
    assert took < 0.4 * 1.9, f"the lab-report search waited for the others ({took:.2f} s)"
