"""Liveness, readiness and /metrics: scraped for real, from the test client and from two gunicorn
workers sharing one metrics folder; and the service with its database gone (a stopped PostgreSQL)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from prometheus_client.parser import text_string_to_metric_families

from cdshooks import create_app
from cdshooks.cards import registry as rules

from .. import postgres
from ..conftest import CheckedClient, empty_prefetch, hook_request, make_settings
from ..fault_fhir import create_app as fault_app
from ..gunicorn_server import gunicorn
from ..loopback import serve_wsgi

PATIENT = "demo-twitching-weakness"
ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"


def scrape(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    values: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str, **labels) -> float:
    """Sum over every label set that contains ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP384R1())


def issuers(tmp_path: Path, key) -> str:
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig", "alg": "ES384"}
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    return str(path)


def token(key, aud: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}, key,
                      algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


@pytest.fixture(scope="module")
def fhir_server():
    with serve_wsgi(fault_app()) as base:
        yield base


# -- probes -----------------------------------------------------------------------------
def test_liveness_and_readiness(client):
    for path in ("/healthz", "/healthz/live"):
        resp = client.get(path)
        assert resp.status_code == 200 and resp.get_json()["status"] == "ok"
    resp = client.get("/healthz/ready")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ready", "database": "ok"}


def test_probes_and_metrics_need_no_token(tmp_path, key):
    app = create_app(make_settings(tmp_path, auth="required", public_url=BASE, trusted_issuers=issuers(tmp_path, key)))
    c = app.test_client()
    assert c.get("/cds-services").status_code == 401
    for path in ("/healthz", "/healthz/live", "/healthz/ready", "/metrics"):
        assert c.get(path).status_code == 200, path
    app.extensions["cdshooks"].store.close()


# -- metrics, in process ------------------------------------------------------------------
def test_metrics_count_requests_stages_cards_feedback_and_auth_rejections(tmp_path, key, fhir_server):
    app = create_app(make_settings(tmp_path, auth="required", public_url=BASE, fhir_servers=(fhir_server,),
                                   trusted_issuers=issuers(tmp_path, key)))
    c = app.test_client()
    before = scrape(c.get("/metrics").get_data(as_text=True))
    service = "fasciculation-patient-view"
    # a hook call answered from a FHIR server on loopback: cards, FHIR fetches
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "fhirServer": f"{fhir_server}/fhir",
            "context": {"userId": "Practitioner/example", "patientId": PATIENT}}
    resp = c.post(f"/cds-services/{service}", json=body,
                  headers={"Authorization": "Bearer " + token(key, f"{BASE}/cds-services/{service}")})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = resp.get_json()["cards"]
    assert cards
    resp.close()  # the answer sent, as a server closes it: the call's stage metrics are made then
    fhir_origin = fhir_server
    # a rejected token (wrong audience), an unknown service
    assert c.get("/cds-services", headers={"Authorization": "Bearer " + token(key, "https://elsewhere")}).status_code \
        == 401
    # feedback: one accepted, one overridden with a known reason, one with a reason we never offered
    override = {"system": "https://cdshooks.example.org/fasciculation/override-reason", "code": "patient-declined"}
    items = [{"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31Z",
              "overrideReason": {"reason": override}},
             {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:06:31Z",
              "overrideReason": {"reason": {"system": "urn:x", "code": "made-up-by-a-client"}}}]
    fb = c.post(f"/cds-services/{service}/feedback", json={"feedback": items},
                headers={"Authorization": "Bearer " + token(key, f"{BASE}/cds-services/{service}/feedback")})
    assert fb.get_json()["stored"] == 2
    after = scrape(c.get("/metrics").get_data(as_text=True))

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("cdshooks_http_request_duration_seconds_count", endpoint="hook", service=service, status="200") == 1
    assert delta("cdshooks_http_request_duration_seconds_count", endpoint="discovery", status="401") == 1
    for stage in ("data", "fetch", "record", "rules", "store", "total"):
        assert delta("cdshooks_hook_stage_duration_seconds_count", service=service, stage=stage) == 1, stage
    rule, indicator = cards[0]["source"]["topic"]["code"], cards[0]["indicator"]
    assert delta("cdshooks_cards_issued_total", rule=rule, indicator=indicator) >= 1
    assert delta("cdshooks_cards_issued_total") == len(cards)
    assert delta("cdshooks_fhir_fetch_duration_seconds_count", server=fhir_origin, outcome="ok") >= 1
    assert delta("cdshooks_auth_rejections_total", reason="aud") == 1
    assert delta("cdshooks_feedback_total", rule=rule, outcome="overridden") == 2
    assert delta("cdshooks_override_reasons_total", rule=rule, reason="patient-declined") == 1
    assert delta("cdshooks_override_reasons_total", rule=rule, reason="other") == 1
    assert "made-up-by-a-client" not in c.get("/metrics").get_data(as_text=True)
    app.extensions["cdshooks"].store.close()


def test_fhir_fetch_errors_are_counted_per_server_and_reason(tmp_path):
    app = create_app(make_settings(tmp_path, fhir_servers=("http://127.0.0.1:9/fhir",)))
    client = CheckedClient(app)
    before = scrape(client.get("/metrics").get_data(as_text=True))
    body = hook_request("patient-view", fhirServer="http://127.0.0.1:9/fhir")  # nothing listens there
    assert client.hook("fasciculation-patient-view", body).status_code == 412
    after = scrape(client.get("/metrics").get_data(as_text=True))
    assert total(after, "cdshooks_fhir_fetch_errors_total", server="http://127.0.0.1:9", reason="connection failed") \
        > total(before, "cdshooks_fhir_fetch_errors_total", server="http://127.0.0.1:9", reason="connection failed")
    app.extensions["cdshooks"].store.close()


@pytest.fixture
def broken_rule():
    def broken(call):
        raise ValueError("a rule bug")

    rules.rule(id="zz-test-broken", title="zz-test-broken", hooks=("patient-view",), indicator="info", reads={},
               source=rules.Source("000", ("Test",)))(broken)
    yield "zz-test-broken"
    rules._REGISTRY.pop("zz-test-broken", None)


def test_rule_failures_are_exposed(tmp_path, broken_rule):
    app = create_app(make_settings(tmp_path, strict_rules=False))
    client = CheckedClient(app)
    before = scrape(client.get("/metrics").get_data(as_text=True))
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    assert client.hook("fasciculation-patient-view", body).status_code == 200
    after = scrape(client.get("/metrics").get_data(as_text=True))
    assert value(after, "cdshooks_rule_failures_total", rule="zz-test-broken") \
        == value(before, "cdshooks_rule_failures_total", rule="zz-test-broken") + 1
    app.extensions["cdshooks"].store.close()


# -- metrics under gunicorn: two workers, one scrape --------------------------------------
def test_two_workers_metrics_add_up_in_one_scrape(tmp_path):
    metrics_dir = tmp_path / "metrics"
    with gunicorn(tmp_path, workers=2, CDSHOOKS_AUTH="off", CDSHOOKS_FHIR_SERVERS="{base}/fhir",
                  CDSHOOKS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                  PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as server:
        workers = set(Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split())
        assert len(workers) == 2

        services = requests.get(f"{server.base}/cds-services", timeout=10).json()["services"]
        keys = next(s["prefetch"] for s in services if s["id"] == "fasciculation-patient-view")

        def call(_):  # every prefetch key given as "no data": no fetch back into the busy workers
            body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "prefetch": dict.fromkeys(keys),
                    "context": {"userId": "Practitioner/example", "patientId": PATIENT}}
            return requests.post(f"{server.base}/cds-services/fasciculation-patient-view", json=body,
                                 headers={"Connection": "close"}, timeout=15).status_code

        calls = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(10):  # concurrent calls until both workers have answered some
                assert list(pool.map(call, range(16))) == [200] * 16
                calls += 16
                written = {p.stem.split("_")[-1] for p in metrics_dir.glob("histogram_*.db")}
                if workers <= written:
                    break
        assert workers <= written, "both workers answered and wrote their metrics"
        for _ in range(3):  # whichever worker answers the scrape, the sum is the same
            samples = scrape(requests.get(f"{server.base}/metrics", timeout=10).text)
            assert total(samples, "cdshooks_http_request_duration_seconds_count", endpoint="hook",
                         service="fasciculation-patient-view", status="200") == calls
            assert total(samples, "cdshooks_hook_stage_duration_seconds_count", stage="total") == calls


# -- the database goes away ---------------------------------------------------------------
@pytest.fixture
def doomed_cluster():
    """A PostgreSQL cluster of its own, which the test stops."""
    try:
        cluster = postgres.start()
    except RuntimeError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    yield cluster
    cluster.remove()


@pytest.mark.postgres
def test_with_the_database_down_calls_answer_or_503_and_readiness_fails(tmp_path, doomed_cluster, key):
    url = doomed_cluster.url(doomed_cluster.create_database())
    open_app = create_app(make_settings(tmp_path, database_url=url, db_connect_timeout=1))
    secured = create_app(make_settings(tmp_path, database_url=url, db_connect_timeout=1, auth="required",
                                       public_url=BASE, trusted_issuers=issuers(tmp_path, key)))
    c, s = CheckedClient(open_app), secured.test_client()
    body = hook_request("patient-view", prefetch=empty_prefetch(open_app, "patient-view"))
    assert c.hook("fasciculation-patient-view", body).status_code == 200
    doomed_cluster.stop()

    # authentication off: the call still answers; its card record degrades (queued, then dropped at close)
    assert c.hook("fasciculation-patient-view", dict(body, hookInstance=str(uuid.uuid4()))).status_code == 200
    assert c.get("/healthz/live").status_code == 200 and c.get("/healthz").status_code == 200
    ready = c.get("/healthz/ready")
    assert ready.status_code == 503 and ready.get_json()["resourceType"] == "OperationOutcome"
    fb = c.post("/cds-services/fasciculation-patient-view/feedback", json={"feedback": [
        {"card": "c", "outcome": "accepted", "acceptedSuggestions": [{"id": "s"}],
         "outcomeTimestamp": "2026-11-21T10:05:31Z"}]})
    assert fb.status_code == 503 and fb.get_json()["issue"][0]["code"] == "transient"

    # authentication on: the replay check cannot run, so the call is 503, never 500 nor 401
    svc = "fasciculation-patient-view"
    resp = s.post(f"/cds-services/{svc}", json=body,
                  headers={"Authorization": "Bearer " + token(key, f"{BASE}/cds-services/{svc}")})
    assert resp.status_code == 503, resp.get_data(as_text=True)
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "transient"
    assert resp.headers["Retry-After"]
    for app in (open_app, secured):
        app.extensions["cdshooks"].store.close()
