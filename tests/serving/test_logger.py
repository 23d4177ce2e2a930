"""gunicorn's own log lines are the service's JSON lines and carry no request path, at any level."""

from __future__ import annotations

import json
import logging
import socket

import requests

from cdshooks.serving.logger import GunicornFormatter, scrub

from ..served import serve_gunicorn

SECRET = "pt-7f3a9c-secret"


def formatted(msg: str, *args: object) -> dict:
    record = logging.LogRecord("gunicorn.error", logging.DEBUG, __file__, 1, msg, args, None)
    return json.loads(GunicornFormatter().format(record))


def test_request_lines_lose_their_path():
    line = formatted("%s %s", "GET", f"/fhir/Patient/{SECRET}")
    assert line["event"] == "server.log" and line["logger"] == "gunicorn.error" and line["level"] == "debug"
    assert line["message"] == "GET [redacted]"


def test_plain_arguments_stay():
    assert formatted("Listening at: %s (%s)", "http://127.0.0.1:8080", 4242)["message"] == \
        "Listening at: http://127.0.0.1:8080 (4242)"
    assert formatted("Booting worker with pid: %s", 77)["message"] == "Booting worker with pid: 77"


def test_preformatted_messages_are_scrubbed():
    raw = f"Invalid request from ip=127.0.0.1: Invalid HTTP request line: 'GET /fhir/Patient/{SECRET} HTTP/1.1'"
    assert SECRET not in formatted(raw)["message"]
    assert SECRET not in scrub(f"No more data after: b'POST /x HTTP/1.1\\r\\nX: {SECRET}'")
    assert scrub(f"GET /fhir/Patient/{SECRET} HTTP/1.1") == "GET [path] HTTP/1.1"


def test_a_real_gunicorn_at_debug_logs_json_without_paths(tmp_path):
    with serve_gunicorn(tmp_path, CDSHOOKS_LOG_LEVEL="DEBUG") as (base, log):
        assert requests.get(f"{base}/fhir/Patient/{SECRET}", timeout=5).status_code in (200, 404)
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET /fhir/Patient/{SECRET} HTTP/1.1 nonsense\r\nHost: x\r\n\r\n".encode())
            s.settimeout(3)
            try:
                s.recv(1000)
            except OSError:
                pass
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET /fhir/Patient/{SECRET}".encode())  # and hang up mid-line
        requests.get(f"{base}/healthz", timeout=5)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(line.get("event") == "server.log" for line in lines), "gunicorn's own lines are there, as JSON"
    assert any(line.get("event") == "server.log" and line.get("level") == "debug" for line in lines)
    assert SECRET not in text
