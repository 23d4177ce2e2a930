"""Authentication at the HTTP surface: 401 bodies, preflights, audiences per endpoint, the replay
cache shared by two gunicorn worker processes, and logs that never carry tokens or patient data."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cdshooks import create_app, logs

from ..conftest import empty_prefetch, hook_request, make_settings
from ..gunicorn_server import gunicorn

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP384R1())


def issuers_file(tmp_path: Path, key) -> Path:
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig", "alg": "ES384"}
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    return path


def token(key, aud: str, **changes) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())} | changes
    return jwt.encode(payload, key, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


@pytest.fixture
def secured(tmp_path, key):
    settings = make_settings(tmp_path, auth="required", public_url=BASE,
                             trusted_issuers=str(issuers_file(tmp_path, key)))
    app = create_app(settings)
    yield app, app.test_client()
    app.extensions["cdshooks"].store.dispose()


def auth(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


def assert_401(resp):
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    body = resp.get_json()
    assert body == {"resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "login", "diagnostics": "Authentication required"}]}


def test_discovery_service_and_feedback_need_a_token_for_their_own_url(secured, key):
    app, c = secured
    assert_401(c.get("/cds-services"))
    assert c.get("/cds-services", headers=auth(token(key, f"{BASE}/cds-services"))).status_code == 200
    url = f"{BASE}/cds-services/fasciculation-patient-view"
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    # a token minted for discovery is not good for a service call
    assert_401(c.post("/cds-services/fasciculation-patient-view", json=body,
                      headers=auth(token(key, f"{BASE}/cds-services"))))
    assert c.post("/cds-services/fasciculation-patient-view", json=body, headers=auth(token(key, url))).status_code == 200
    fb = {"feedback": [{"card": "x", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}]}
    assert_401(c.post("/cds-services/fasciculation-patient-view/feedback", json=fb, headers=auth(token(key, url))))
    ok = c.post("/cds-services/fasciculation-patient-view/feedback", json=fb,
                headers=auth(token(key, url + "/feedback")))
    assert ok.status_code == 200


def test_preflight_and_health_need_no_token(secured):
    _, c = secured
    pre = c.options("/cds-services/fasciculation-patient-view",
                    headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert c.get("/healthz").status_code == 200


def test_rejections_carry_no_detail_and_cors(secured, key):
    _, c = secured
    for headers in ({}, auth("not-a-jwt"), auth(token(key, f"{BASE}/cds-services", exp=int(time.time()) - 600)),
                    {"Authorization": "Basic dXNlcjpwYXNz"}):
        resp = c.get("/cds-services", headers={"Origin": "https://x.example", **headers})
        assert_401(resp)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "X-CDS-Authentication" not in resp.headers


def test_no_token_patient_data_or_identifiers_in_logs(tmp_path, key):
    secret_name, secret_mrn, secret_pid = "Zebediah Quixotewright", "MRN-99887766", "pt-7f3e2a"
    fhir_token = "fhir-access-token-SHOULD-NOT-LEAK"
    settings = make_settings(tmp_path, auth="required", public_url=BASE, log_level="DEBUG",
                             trusted_issuers=str(issuers_file(tmp_path, key)))
    app = create_app(settings)
    stream = io.StringIO()
    logs.logger.handlers[0].setStream(stream)
    c = app.test_client()
    prefetch = empty_prefetch(app, "patient-view")
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"Patient/{secret_pid}",
                                                                  "display": secret_name},
            "identifier": [{"value": secret_mrn}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82470000"}], "text": secret_name},
            "onsetDateTime": "2026-01-01"}
    prefetch["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": cond}]}
    body = hook_request("patient-view", patient_id=secret_pid, prefetch=prefetch,
                        fhirServer="https://fhir.not-allowed.example",
                        fhirAuthorization={"access_token": fhir_token, "token_type": "Bearer", "expires_in": 60,
                                           "scope": "patient/*.read", "subject": "cds"})
    good = token(key, f"{BASE}/cds-services/fasciculation-patient-view")
    with c.post("/cds-services/fasciculation-patient-view", json=body, headers=auth(good)) as answered:
        assert answered.status_code == 200  # closed once read, as a server closes a sent answer: logged then
    replay = c.post("/cds-services/fasciculation-patient-view", json=body, headers=auth(good))
    assert replay.status_code == 401
    del body["prefetch"]["conditions"]  # now the fallback is needed, and the server is not allowed: 412
    resp = c.post("/cds-services/fasciculation-patient-view", json=body,
                  headers=auth(token(key, f"{BASE}/cds-services/fasciculation-patient-view")))
    assert resp.status_code == 412
    app.extensions["cdshooks"].store.dispose()
    captured = stream.getvalue()
    assert "hook.answered" in captured and "auth.rejected" in captured  # the logs did record the calls
    for secret in (secret_name, secret_mrn, secret_pid, fhir_token, good, good.split(".")[2]):
        assert secret not in captured, f"log leaked {secret[:12]}..."


def test_two_worker_processes_share_the_replay_cache(tmp_path, key, db_url):
    with gunicorn(tmp_path, workers=2, CDSHOOKS_AUTH="required", CDSHOOKS_PUBLIC_URL=BASE,
                  CDSHOOKS_TRUSTED_ISSUERS=str(issuers_file(tmp_path, key)), CDSHOOKS_DATABASE_URL=db_url) as running:
        base = running.base
        replays = []
        for _ in range(12):
            tok = token(key, f"{BASE}/cds-services")
            first = requests.get(base + "/cds-services", headers=auth(tok) | {"Connection": "close"}, timeout=5)
            second = requests.get(base + "/cds-services", headers=auth(tok) | {"Connection": "close"}, timeout=5)
            assert first.status_code == 200
            replays.append(second.status_code)
        assert replays == [401] * 12
