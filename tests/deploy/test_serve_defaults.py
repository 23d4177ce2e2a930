"""`make serve` with only CDSHOOKS_PORT set: the audience and the service's own /fhir follow the
port and the host the request reached (127.0.0.1 and localhost alike); trailing slashes work."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from ..conftest import REPO
from .serving import clean_env, free_port, running

PATIENT = "demo-twitching-weakness"
ISS = "https://ehr.example.org"


def _serve(tmp_path, port: int, **env: str):
    # SERVE_STAMP=pyproject.toml: the venv is the one the tests run in; make serve's recipe runs as it is.
    cmd = ["make", "-s", "--no-print-directory", "serve", "SERVE_STAMP=pyproject.toml"]
    environ = clean_env(CDSHOOKS_PORT=str(port), CDSHOOKS_WORKERS="3",  # a worker calls back another
                        CDSHOOKS_INSTANCE_PATH=str(tmp_path / "instance"), **env)
    return running(cmd, environ, REPO, tmp_path / "serve.log", f"http://127.0.0.1:{port}/healthz")


def _call(base: str, fhir_server: str, path: str = "/cds-services/fasciculation-patient-view", **kwargs):
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "fhirServer": fhir_server,
            "context": {"userId": "Practitioner/example", "patientId": PATIENT}}
    return requests.post(base + path, json=body, timeout=20, **kwargs)


def test_only_the_port_set(tmp_path):
    port = free_port()
    with _serve(tmp_path, port):
        for host in ("127.0.0.1", "localhost"):
            base = f"http://{host}:{port}"
            for fhir_host in ("127.0.0.1", "localhost"):
                resp = _call(base, f"http://{fhir_host}:{port}/fhir")
                assert resp.status_code == 200, resp.text
                assert "mnd-red-flag" in {c["source"]["topic"]["code"] for c in resp.json()["cards"]}
            # trailing slashes: the preflight and the calls
            pre = requests.options(f"{base}/cds-services/", headers={
                "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "GET"}, timeout=5)
            assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
            assert requests.get(f"{base}/cds-services/", timeout=5).json()["services"]
            assert _call(base, f"http://{host}:{port}/fhir/",
                         path="/cds-services/fasciculation-patient-view/").status_code == 200
        # another port on loopback is not the service's own /fhir
        other = _call(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{free_port()}/fhir")
        assert other.status_code == 412


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP384R1())


def _token(key, aud: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": aud, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}, key,
                      algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


def test_the_audience_is_the_url_the_request_reached(tmp_path, key):
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig", "alg": "ES384"}
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    port = free_port()
    with _serve(tmp_path, port, CDSHOOKS_AUTH="required", CDSHOOKS_TRUSTED_ISSUERS=str(issuers)):
        for host in ("127.0.0.1", "localhost"):
            url = f"http://{host}:{port}/cds-services"
            ok = requests.get(url, headers={"Authorization": f"Bearer {_token(key, url)}"}, timeout=5)
            assert ok.status_code == 200
            other = "localhost" if host == "127.0.0.1" else "127.0.0.1"
            wrong = requests.get(url, headers={"Authorization": f"Bearer {_token(key, f'http://{other}:{port}/cds-services')}"},
                                 timeout=5)
            assert wrong.status_code == 401
            call = f"http://{host}:{port}/cds-services/fasciculation-patient-view"
            resp = _call(f"http://{host}:{port}", f"http://{host}:{port}/fhir",
                         headers={"Authorization": f"Bearer {_token(key, call)}"})
            assert resp.status_code == 200, resp.text
