"""The JSON codec: orjson with the standard module's tolerance when reading, strict JSON when writing."""

from __future__ import annotations

import json
import math

import pytest

from cdshooks.service import jsoncodec

from ..conftest import empty_prefetch, hook_request


def test_reads_what_the_standard_module_reads():
    assert jsoncodec.loads(b'{"a": [1, 2.5, "\\u00e9", null, true]}') == {"a": [1, 2.5, "é", None, True]}
    assert math.isnan(jsoncodec.loads(b'{"v": NaN}')["v"])  # orjson refuses NaN; json reads it
    assert jsoncodec.loads(b'{"v": Infinity}')["v"] == math.inf
    assert jsoncodec.loads(b'{"v": 123456789012345678901234567890}')["v"] == pytest.approx(1.2345678901e29)
    assert jsoncodec.loads('{"v": "\\ud800"}')["v"] == "\ud800"  # a lone surrogate escape


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,]", b"\xff\xfe", b"nope", b'{"a": 1} x'])
def test_not_json_is_a_value_error(raw):
    with pytest.raises(ValueError):
        jsoncodec.loads(raw)


def test_deep_nesting_is_a_value_error_not_a_crash():
    with pytest.raises(ValueError):
        jsoncodec.loads(b"[" * 100_000 + b"]" * 100_000)


def test_writes_compact_json_in_insertion_order():
    out = jsoncodec.dumps({"z": 1, "a": [1.5, None, "é"], "n": math.nan})
    assert out == '{"z":1,"a":[1.5,null,"é"],"n":null}'.encode()
    assert json.loads(jsoncodec.dumps({"big": 10**30})) == {"big": 10**30}  # past 64 bits: the fallback writes it


def test_hook_call_with_nan_in_a_resource_is_answered(app, client):
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    raw = json.dumps(body).replace('"Practitioner/example"', '"Practitioner/example", "weight": NaN')
    resp = client.post("/cds-services/fasciculation-patient-view", data=raw, content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.get_json() == {"cards": []}


@pytest.mark.parametrize("raw", [b"{", b"[" * 5000 + b"]" * 5000, b"\xff"])
def test_bad_bodies_are_400(client, raw):
    resp = client.post("/cds-services/fasciculation-patient-view", data=raw, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["resourceType"] == "OperationOutcome"
