"""The request limits as a client meets them: gunicorn (the ``make serve`` configuration) on loopback,
real sockets, chunked bodies, a 15 KB client JWT."""

from __future__ import annotations

import json
import socket
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from ..served import serve_gunicorn

ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"
MAX_BODY = 65536


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def server(tmp_path_factory, key):
    tmp = tmp_path_factory.mktemp("served")
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig", "alg": "ES384"}
    (tmp / "issuers.json").write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    with serve_gunicorn(tmp, CDSHOOKS_AUTH="required", CDSHOOKS_PUBLIC_URL=BASE,
                        CDSHOOKS_TRUSTED_ISSUERS=str(tmp / "issuers.json"), CDSHOOKS_MAX_BODY_BYTES=str(MAX_BODY),
                        CDSHOOKS_LOG_LEVEL="WARNING") as (base, _):
        yield base, int(base.rsplit(":", 1)[1])


def token(key, aud: str, padding: int = 0) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    if padding:  # an issuer that puts many claims in its tokens
        payload["groups"] = [f"group-{n:06d}" for n in range(padding * 3 // 4 // 15)]  # base64: 4 chars per 3
    return jwt.encode(payload, key, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


def raw_exchange(port: int, head: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """Send a request with a chunked body over a plain socket; the status and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before the whole body is sent
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), body


def chunked_head(path: str, tok: str) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


FEEDBACK = "/cds-services/fasciculation-patient-view/feedback"


def test_a_chunked_body_over_the_limit_is_413(server, key):
    base, port = server
    item = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}
    body = json.dumps({"feedback": [item], "pad": " " * (MAX_BODY + 5000)}).encode()
    status, answer = raw_exchange(port, chunked_head(FEEDBACK, token(key, BASE + FEEDBACK)),
                                  [body[i:i + 8192] for i in range(0, len(body), 8192)])
    assert status == 413
    outcome = json.loads(answer)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "too-costly"


def test_a_chunked_body_within_the_limit_is_read(server, key):
    base, port = server
    item = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}
    body = json.dumps({"feedback": [item], "pad": " " * (MAX_BODY - 1000)}).encode()
    status, answer = raw_exchange(port, chunked_head(FEEDBACK, token(key, BASE + FEEDBACK)),
                                  [body[i:i + 8192] for i in range(0, len(body), 8192)])
    assert status == 200, answer
    assert json.loads(answer)["stored"] == 1


@pytest.mark.parametrize("size", [15_000, 16_000])
def test_a_large_legitimate_token_gets_through(server, key, size):
    base, _ = server
    tok = token(key, BASE + "/cds-services", padding=size - 400)
    assert size - 600 < len(tok) <= 16 * 1024, len(tok)
    resp = requests.get(base + "/cds-services", headers={"Authorization": f"Bearer {tok}"}, timeout=10)
    assert resp.status_code == 200, resp.text[:300]


def test_a_header_past_every_limit_is_refused_without_a_5xx(server):
    base, _ = server
    resp = requests.get(base + "/cds-services", headers={"X-Filler": "x" * 40_000}, timeout=10)
    assert 400 <= resp.status_code < 500


def test_a_deeply_nested_body_is_400_over_the_wire(server, key):
    base, _ = server
    url = "/cds-services/fasciculation-patient-view"
    resp = requests.post(base + url, data='{"hook":' + "[" * 1000 + "]" * 1000 + "}",
                         headers={"Authorization": f"Bearer {token(key, BASE + url)}",
                                  "Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["resourceType"] == "OperationOutcome"
