"""Log lines: one JSON object each, tagged with the request id, never carrying a credential."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cdshooks import logs


@pytest.fixture
def lines():
    """The JSON lines ``logs.configure`` writes, captured from its stream."""
    logs.configure("DEBUG")
    stream = io.StringIO()
    logs.logger.handlers[0].setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.set_request_id(None)


def test_an_event_is_one_json_line_with_its_fields(lines):
    logs.event("hook.answered", service="fasciculation-patient-view", cards=2)
    (line,) = lines()
    assert line["event"] == "hook.answered" and line["level"] == "info" and line["logger"] == "cdshooks"
    assert (line["service"], line["cards"]) == ("fasciculation-patient-view", 2)
    assert line["ts"].endswith("Z") and "request_id" not in line


def test_lines_carry_the_request_id_while_it_is_set(lines):
    rid = logs.new_request_id()
    logs.set_request_id(rid)
    logs.event("auth.rejected", logging.WARNING, reason="aud")
    logs.set_request_id(None)
    logs.event("service.started")
    first, second = lines()
    assert first["request_id"] == rid and len(rid) == 32
    assert "request_id" not in second


def test_credential_fields_are_redacted(lines):
    logs.event("oops", token="eyJhbGciOi.secret.sig", Authorization="Bearer x", iss="https://ehr.example.org")
    (line,) = lines()
    assert line["token"] == "[redacted]" and line["Authorization"] == "[redacted]"
    assert line["iss"] == "https://ehr.example.org"
