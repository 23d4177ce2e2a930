"""Validly signed tokens whose claims are hostile (NaN, Infinity, 10^400, deep nesting) are 401, never 500."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cdshooks import create_app

from ..conftest import empty_prefetch, hook_request, make_settings

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"
URL = f"{BASE}/cds-services/fasciculation-patient-view"


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def secured(tmp_path, key):
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig", "alg": "ES384"}
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    app = create_app(make_settings(tmp_path, auth="required", public_url=BASE, trusted_issuers=str(issuers)))
    app.config["PROPAGATE_UNEXPECTED"] = False
    yield app, app.test_client()
    app.extensions["cdshooks"].store.dispose()


def signed(key, payload_text: str) -> str:
    """A token signed with the trusted key over exactly ``payload_text`` (so any JSON number can be sent)."""
    return jwt.PyJWS().encode(payload_text.encode(), key, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


def payload_text(**numbers: str) -> str:
    now = int(time.time())
    fields = {"iss": json.dumps(ISS), "aud": json.dumps(URL), "jti": json.dumps(str(uuid.uuid4())),
              "iat": str(now), "exp": str(now + 300)} | numbers
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


HOSTILE = {
    "exp NaN": {"exp": "NaN"},
    "iat NaN": {"iat": "NaN"},
    "exp Infinity": {"exp": "Infinity"},
    "iat -Infinity": {"iat": "-Infinity"},
    "exp 1e400": {"exp": "1e400"},
    "exp 10^400 as an integer": {"exp": "1" + "0" * 400},
    "iat 10^400 as an integer": {"iat": "1" + "0" * 400},
    "exp 10^5000 as an integer": {"exp": "1" + "0" * 5000},
    "iat negative": {"iat": "-1"},
    "nbf NaN": {"nbf": "NaN"},
    "exp past year 9999": {"exp": "253402300800"},
    "nested claims": {"extra": "[" * 3000 + "]" * 3000},
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_signed_token_with_hostile_claims_is_401(secured, key, name):
    app, client = secured
    token = signed(key, payload_text(**HOSTILE[name]))
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    resp = client.post("/cds-services/fasciculation-patient-view", json=body,
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_the_same_token_with_ordinary_claims_is_accepted(secured, key):
    """The check above fails for the hostile claims, not for the way the token is built."""
    app, client = secured
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    resp = client.post("/cds-services/fasciculation-patient-view", json=body,
                       headers={"Authorization": f"Bearer {signed(key, payload_text())}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
