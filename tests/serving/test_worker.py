"""The production worker on real sockets: a real gunicorn on loopback, clients that send half a
body and stop, and normal calls beside them that keep their latency. Bounded in time: the
server gives a client 3 s to send its request."""

from __future__ import annotations

import json
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from cdshooks.serving.worker import RequestBuffer

from ..served import serve_gunicorn

SERVICE = "/cds-services/fasciculation-patient-view"


# -- the request scanner ----------------------------------------------------------------
HEAD = b"POST /x HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize("parts, whole", [
    ([b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"], True),
    ([b"GET / HTTP/1.1\r\nHost: h\r\n"], False),
    ([HEAD + b"Content-Length: 5\r\n\r\nab"], False),
    ([HEAD + b"Content-Length: 5\r\n\r\nab", b"cde"], True),
    ([HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n"], False),
    ([HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabc", b"de\r\n3;x=y\r\nfgh\r\n0\r\n\r\n"], True),
    ([HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\nTrailer: 1\r\n", b"\r\n"], True),
])
def test_a_request_is_whole_when_its_framing_says_so(parts, whole):
    buffer = RequestBuffer(max_body=1000)
    results = [buffer.feed(p) for p in parts]
    assert results[-1] is whole and not buffer.hand_over
    assert not any(results[:-1])


@pytest.mark.parametrize("head", [
    HEAD + b"Content-Length: 5000\r\n\r\n",                                 # over the limit: the app answers 413
    HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",               # conflicting: the parser answers 400
    HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n200000\r\n" + b"a" * 1_050_000,  # well past the limit, arriving
])
def test_requests_that_will_be_refused_are_handed_over_at_once(head):
    buffer = RequestBuffer(max_body=1000)
    assert buffer.feed(head) is True and buffer.hand_over


def test_headers_past_the_cap_are_handed_over():
    buffer = RequestBuffer(max_body=1000, header_cap=100)
    assert buffer.feed(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10) is False
    assert buffer.feed(b"X: y\r\n" * 20) is True and buffer.hand_over


# -- a real gunicorn --------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("served")
    with serve_gunicorn(workdir, CDSHOOKS_THREADS="2", CDSHOOKS_CLIENT_TIMEOUT="3",
                        CDSHOOKS_MAX_BODY_BYTES="200000") as (base, log):
        yield base, log


def hook_body(base: str) -> bytes:
    keys = requests.get(base + "/cds-services", timeout=5).json()["services"][0]["prefetch"]
    return json.dumps({"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                       "context": {"userId": "Practitioner/example", "patientId": "p1"},
                       "prefetch": {key: None for key in keys}}).encode()


def timed_calls(base: str, body: bytes, n: int = 8) -> list[float]:
    out = []
    for _ in range(n):
        started = time.monotonic()
        resp = requests.post(base + SERVICE, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        out.append(time.monotonic() - started)
        assert resp.status_code == 200, resp.text
    return out


def half_sent(base: str, count: int) -> list[socket.socket]:
    port = int(base.rsplit(":", 1)[1])
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  "Content-Length: 5000\r\n\r\n".encode() + b'{"hook": "patient-view", ')
        socks.append(s)
    return socks


def read_response(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, OSError):
        pass
    return data


def test_half_sent_bodies_hold_no_thread(server):
    base, _ = server
    body = hook_body(base)
    timed_calls(base, body, 3)  # warm-up
    normal = timed_calls(base, body)
    for count in (5, 50):
        socks = half_sent(base, count)
        try:
            loaded = timed_calls(base, body)
            # two threads, `count` clients that never finish: a worker that gave them threads
            # would not answer at all until they time out
            assert max(loaded) < max(normal) + 0.5, (count, normal, loaded)
            assert statistics.median(loaded) < statistics.median(normal) * 3 + 0.05, (count, normal, loaded)
        finally:
            for s in socks:
                s.close()


def test_a_client_that_stops_gets_408_after_the_client_timeout(server):
    base, _ = server
    (sock,) = half_sent(base, 1)
    started = time.monotonic()
    answer = read_response(sock, 6)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b'"OperationOutcome"' in answer
    assert 2.5 < time.monotonic() - started < 5.5


def test_a_slow_but_whole_body_is_answered(server):
    base, _ = server
    body = hook_body(base)
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        for i in range(0, len(body), len(body) // 5 + 1):
            s.sendall(body[i:i + len(body) // 5 + 1])
            time.sleep(0.2)
        answer = read_response(s, 5)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_chunked_bodies_expect_continue_and_keep_alive(server):
    base, _ = server
    body = hook_body(base)

    def chunks():
        for i in range(0, len(body), 100):
            yield body[i:i + 100]

    with requests.Session() as session:
        for _ in range(3):  # one kept-alive connection
            resp = session.post(base + SERVICE, data=chunks(), headers={"Content-Type": "application/json"},
                                timeout=5)
            assert resp.status_code == 200 and "cards" in resp.json()
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode())
        s.settimeout(2)
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        answer = read_response(s, 5)
    assert b"HTTP/1.1 200" in answer and answer.count(b"100 Continue") == 0


def test_a_declared_body_over_the_limit_is_refused_at_once(server):
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  "Content-Length: 900000\r\n\r\n".encode() + b"{" * 1000)
        started = time.monotonic()
        answer = read_response(s, 5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 2


def test_calls_in_parallel_threads_all_answer(server):
    base, _ = server
    body = hook_body(base)
    def one(_):
        resp = requests.post(base + SERVICE, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        feedback = requests.post(base + SERVICE + "/feedback", json={"feedback": []}, timeout=10)
        return resp.status_code, feedback.status_code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))
    assert {r[0] for r in results} == {200}
    assert len({r[1] for r in results}) == 1 and results[0][1] < 500


def test_a_chunked_body_over_the_limit_is_refused_with_413(server):
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    piece = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for _ in range(24):  # 1.5 MB, the limit is 200 KB; never the last chunk
                s.sendall(b"10000\r\n" + piece + b"\r\n")
        except OSError:
            pass  # the server may answer and close before everything is sent
        answer = read_response(s, 5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"OperationOutcome"' in answer


# -- what gunicorn's parser refuses -----------------------------------------------------
SECRET = "Bearer eyJhbGciOiJFUzM4NCJ9.patient-Smith-1234"


def raw_exchange(base: str, request: bytes) -> bytes:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        return read_response(s, 5)


@pytest.mark.parametrize("request_bytes, status, code", [
    (f"POST {SERVICE} HTTP/1.1\r\nHost: h\r\nAuthorization: {SECRET}{'x' * 40_000}\r\n\r\n".encode(),
     431, "too-costly"),
    (f"GET {SERVICE} HTTP/1.1\r\nHost: h\r\n".encode() + b"".join(f"X-H{i}: {SECRET}\r\n".encode()
                                                                   for i in range(120)) + b"\r\n", 431, "too-costly"),
    (f"GET /cds-services?q={'a' * 9000}&who={SECRET} HTTP/1.1\r\nHost: h\r\n\r\n".encode(), 414, "too-costly"),
    (f"GARBAGE {SECRET}\r\n\r\n".encode(), 400, "invalid"),
    (f"POST {SERVICE} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: snappy\r\n\r\n".encode(), 400, "not-supported"),
    (f"POST {SERVICE} HTTP/1.1\r\nHost: h\r\nBad Header Name: {SECRET}\r\n\r\n".encode(), 400, "invalid"),
], ids=["one-huge-header", "too-many-headers", "long-request-line", "not-http", "transfer-coding", "bad-header"])
def test_what_the_http_parser_refuses_is_answered_as_an_operation_outcome(server, request_bytes, status, code):
    base, log = server
    answer = raw_exchange(base, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"application/fhir+json" in head
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == code
    assert b"patient-Smith" not in answer  # nothing the client sent is echoed back
    time.sleep(0.2)
    text = log.read_text()
    assert "patient-Smith" not in text and "eyJhbGci" not in text
    assert '"http.refused"' in text
    assert requests.get(base + "/healthz", timeout=5).status_code == 200  # the worker serves on
