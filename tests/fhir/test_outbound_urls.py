"""Where outbound requests (and the FHIR access token) may go: URLs in RFC 3986 normal form,
compared in that form and requested in that form, against a loopback server that records every
path it is asked for."""

from __future__ import annotations

import threading

import pytest
from flask import Flask, jsonify, request

from cdshooks import create_app
from cdshooks.fhir.client import (
    FetchError,
    FhirClient,
    UnsafeUrl,
    allowed_server,
    base_url_problem,
    normalize_base,
    normalize_url,
)

from ..conftest import CheckedClient, hook_request, make_settings
from ..fault_fhir import create_app as fault_app
from ..fault_fhir import faults
from ..loopback import serve_wsgi

PATIENT = "demo-twitching-weakness"
TOKEN = "the-fhir-access-token"


@pytest.mark.parametrize("url, normal", [
    ("HTTP://EHR.Example.ORG:80/fhir", "http://ehr.example.org/fhir"),
    ("https://ehr.example.org:443/fhir/", "https://ehr.example.org/fhir/"),
    ("https://ehr.example.org:8443/fhir", "https://ehr.example.org:8443/fhir"),
    ("https://ehr.example.org/fhir/../admin", "https://ehr.example.org/admin"),
    ("https://ehr.example.org/fhir/%2E%2E/admin", "https://ehr.example.org/admin"),
    ("https://ehr.example.org/fhir/%2e./%2e/admin", "https://ehr.example.org/admin"),
    ("https://ehr.example.org/fhir/./Patient/../Condition?x=%7e%2f", "https://ehr.example.org/fhir/Condition?x=~%2F"),
    ("https://ehr.example.org/a/b/../../../../etc", "https://ehr.example.org/etc"),
    ("https://ehr.example.org", "https://ehr.example.org/"),
    ("https://ehr.example.org/fhir#frag", "https://ehr.example.org/fhir"),
    ("http://[::1]:8080/fhir", "http://[::1]:8080/fhir"),
])
def test_normal_form(url, normal):
    assert normalize_url(url) == normal
    assert normalize_url(normal) == normal


@pytest.mark.parametrize("url", [
    "https://user:pw@ehr.example.org/fhir", "https://user@ehr.example.org/fhir", "ftp://ehr.example.org/fhir",
    "https://ehr.example.org/fhir/..%2Fadmin", "https://ehr.example.org/fhir/..%5cadmin",
    "https://ehr.example.org/fhir\\..\\admin", "https://ehr.example.org/fhir/..;x/admin",
    "https://ehr.example.org/fhir/%2e%2e;/admin", "https://ehr.exa%6dple.org/fhir", "https:///fhir",
    "https://ehr.example.org/fh ir", "https://ehr.example.org:99999/fhir",
])
def test_urls_without_a_safe_normal_form_are_refused(url):
    with pytest.raises(UnsafeUrl):
        normalize_url(url)


@pytest.mark.parametrize("url, problem", [
    ("https://ehr.example.org/fhir", None),
    ("https://ehr.example.org/fhir?x=1", "may not have a query string"),
    ("https://ehr.example.org/fhir?", "may not have a query string"),
    ("https://ehr.example.org/fhir#frag", "may not have a fragment"),
    ("https://ehr.example.org/fhir#", "may not have a fragment"),
    ("https://user:pw@ehr.example.org/fhir", "may not carry user information"),
])
def test_fhir_server_base_problems(url, problem):
    assert base_url_problem(url) == problem


@pytest.mark.parametrize("url, ok", [
    ("http://127.0.0.1:8080/fhir/../admin", False),
    ("http://127.0.0.1:8080/fhir/%2e%2e/admin", False),
    ("http://127.0.0.1:8080/fhir/r4/../../fhir", True),
    ("http://127.0.0.1:8080/fhir/./r4", True),
    ("HTTP://127.0.0.1:8080/fhir", True),
    ("http://127.0.0.1:8080/FHIR", False),
    ("http://127.0.0.1:8080/fhirx", False),
    ("http://127.0.0.1:8080/fhir?x=1", False),
])
def test_allowlist_compares_normal_forms(url, ok):
    assert allowed_server(url, ("http://127.0.0.1:8080/fhir/",)) is ok


def test_allowlist_entries_are_normalised_too():
    assert normalize_base("https://EHR.example.org:443/a/./fhir/") == "https://ehr.example.org/a/fhir"
    assert allowed_server("https://ehr.example.org/a/fhir/r4", ("https://EHR.example.org:443/a/./fhir/",))


# -- against a loopback server that records every request -----------------------------
@pytest.fixture(scope="module")
def fixtures_server():
    app = fault_app()
    with serve_wsgi(app) as base:
        yield base, faults(app)


def call(tmp_path, fhir_server, allow):
    app = create_app(make_settings(tmp_path, fhir_servers=allow))
    body = hook_request("patient-view", patient_id=PATIENT, fhirServer=fhir_server,
                        fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                           "scope": "patient/*.read", "subject": "svc"})
    return CheckedClient(app).hook("fasciculation-patient-view", body)


@pytest.mark.parametrize("suffix", ["/fhir/../admin", "/fhir/%2E%2E/admin", "/fhir/%2e./admin", "/fhir/..%2Fadmin"])
def test_dot_segments_in_fhir_server_never_reach_outside_the_base(fixtures_server, tmp_path, suffix):
    base, log = fixtures_server
    log.clear()
    resp = call(tmp_path, base + suffix, (f"{base}/fhir",))
    assert resp.status_code in (400, 412)
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    assert log.seen() == [], "nothing at all was requested"


@pytest.mark.parametrize("suffix, says", [
    ("/fhir?x=1", "query"), ("/fhir#frag", "fragment"), ("/fhir?", "query"),
])
def test_fhir_server_with_query_or_fragment_is_a_400(fixtures_server, tmp_path, suffix, says):
    base, log = fixtures_server
    log.clear()
    resp = call(tmp_path, base + suffix, (f"{base}/fhir",))
    assert resp.status_code == 400
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["fhirServer"]
    assert says in outcome["issue"][0]["diagnostics"]
    assert log.seen() == []


def test_fhir_server_with_user_information_is_a_400(fixtures_server, tmp_path):
    base, log = fixtures_server
    log.clear()
    resp = call(tmp_path, base.replace("http://", "http://user:pw@") + "/fhir", (f"{base}/fhir",))
    assert resp.status_code == 400
    assert resp.get_json()["issue"][0]["expression"] == ["fhirServer"]
    assert log.seen() == []


def test_a_fhir_server_with_harmless_dot_segments_is_requested_in_normal_form(fixtures_server, tmp_path):
    base, log = fixtures_server
    log.clear()
    resp = call(tmp_path, f"{base}/fhir/x/../", (f"{base}/fhir",))
    assert resp.status_code == 200
    seen = log.seen()
    assert seen and all(r.path.startswith("/fhir/") and "/x/" not in r.path and r.authorization for r in seen)


class Recorder:
    """A FHIR server whose Condition search pages to a ``next`` link the test chooses."""

    def __init__(self) -> None:
        self.app = Flask("recorder")
        self.next_url = ""
        self.seen: list[tuple[str, bool]] = []
        self.lock = threading.Lock()

        @self.app.before_request
        def record():
            with self.lock:
                self.seen.append((request.path, "Authorization" in request.headers))

        @self.app.get("/fhir/Condition")
        def first():
            if request.args.get("page") == "2":
                return jsonify({"resourceType": "Bundle", "type": "searchset", "entry": []})
            return jsonify({"resourceType": "Bundle", "type": "searchset", "entry": [],
                            "link": [{"relation": "next", "url": self.next_url}]})

        @self.app.get("/admin/<path:rest>")
        def admin(rest):
            return jsonify({"resourceType": "Bundle", "type": "searchset", "entry": []})


@pytest.fixture(scope="module")
def recorder():
    rec = Recorder()
    with serve_wsgi(rec.app) as base:
        yield rec, base


@pytest.mark.parametrize("link", [
    "{base}/fhir/../admin/steal?page=2", "{base}/fhir/%2E%2E/admin/steal?page=2", "{base}/fhir/%2e%2E/admin?page=2",
    "{base}/fhir/..%2Fadmin?page=2", "{base}/fhir/..;/admin?page=2", "{base}/admin/fhir/Condition?page=2",
    "http://user:pw@{host}/fhir/Condition?page=2", "http://localhost:{port}/fhir/Condition?page=2",
])
def test_next_links_outside_the_base_are_refused(recorder, tmp_path, link):
    rec, base = recorder
    rec.seen.clear()
    rec.next_url = link.format(base=base, host=base.split("//")[1], port=base.rsplit(":", 1)[1])
    out = FhirClient(f"{base}/fhir", make_settings(tmp_path), TOKEN).search_many({"k": "Condition?x=1"})
    assert out["k"]["_truncated"] is True, "not followed: the key is incomplete, never 'no data'"
    assert rec.seen == [("/fhir/Condition", True)], "only the first page, inside the base, was requested"


def test_next_link_with_dot_segments_inside_the_base_is_followed_in_normal_form(recorder, tmp_path):
    rec, base = recorder
    rec.seen.clear()
    rec.next_url = f"{base}/fhir/Patient/%2E%2E/./Condition?page=2"
    out = FhirClient(f"{base}/fhir", make_settings(tmp_path), TOKEN).search_many({"k": "Condition?x=1"})
    assert out["k"]["entry"] == [] and "_truncated" not in out["k"]
    assert rec.seen == [("/fhir/Condition", True), ("/fhir/Condition", True)]


def test_a_search_that_would_leave_the_base_is_not_sent(recorder, tmp_path):
    rec, base = recorder
    rec.seen.clear()
    with pytest.raises(FetchError) as err:
        FhirClient(f"{base}/fhir", make_settings(tmp_path), TOKEN).search_many({"k": "../admin/x"})
    assert err.value.reason == "URL outside fhirServer"
    assert rec.seen == []
