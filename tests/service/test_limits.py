"""Request limits that answer promptly, and bodies no client can turn into a 5xx.

Sizes (413, chunked too), nesting depth (400, checked on the bytes before parsing), feedback items
and draft orders per request (413, nothing stored), the request deadline (503 before any worker
timeout, nothing recorded), malformed Bundles (400), and what production refuses.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdshooks import create_app
from cdshooks.cards import registry as rules
from cdshooks.cards.card import Card, render_detail
from cdshooks.config import ConfigError, Settings
from cdshooks.service import body as request_body
from cdshooks.service import endpoints

from ..conftest import empty_prefetch, hook_request, make_settings

PV = "/cds-services/fasciculation-patient-view"
SIGN = "/cds-services/fasciculation-order-sign"
FEEDBACK = PV + "/feedback"


def outcome(resp, status: int) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    return body["issue"][0]


def post(client, path: str, data: bytes | str):
    return client.post(path, data=data, content_type="application/json")


def feedback_item(n: int) -> dict:
    return {"card": f"card-{n}", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31Z"}


def draft(n: int) -> dict:
    return {"resource": {"resourceType": "ServiceRequest", "id": f"d{n}", "status": "draft", "intent": "order",
                         "subject": {"reference": "Patient/p1"}, "code": {"text": "physiotherapy"}}}


def issued_count(app) -> int:
    return sum(r["issued"] for r in app.extensions["cdshooks"].store.report())


# -- the nesting depth, measured on bytes -----------------------------------------------------------
def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# strings full of the characters that could fool a byte scan: brackets, quotes, backslashes
tricky_text = st.text(alphabet=st.sampled_from(list('[]{}"\\ab\n/u0é')), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=json_values, limit=st.integers(min_value=0, max_value=12), ascii_only=st.booleans())
def test_nesting_scan_agrees_with_the_parsed_depth(value, limit, ascii_only):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    assert request_body.nesting_exceeds(raw, limit) == (depth(value) > limit)


@pytest.mark.parametrize("text, limit, deep", [
    ("[" * 101 + "]" * 101, 100, True),
    ("[" * 100 + "]" * 100, 100, False),
    ('{"a":' * 60 + "[" * 41 + "]" * 41 + "}" * 60, 100, True),
    ('["' + "[" * 500 + '"]', 3, False),             # brackets inside a string are not structure
    ('["\\"' + "[" * 500 + '"]', 3, False),          # nor after an escaped quote
    ('["\\\\", ' + "[" * 5 + "]" * 5 + "]", 5, True),  # an escaped backslash ends before the quote
    ("[[1,2],[3,[4]]]", 2, True),
])
def test_nesting_scan_examples(text, limit, deep):
    assert request_body.nesting_exceeds(text.encode(), limit) is deep


def test_nesting_scan_reads_utf16_json():
    text = "[" * 20 + "]" * 20
    assert request_body.nesting_exceeds(text.encode("utf-16"), 10)
    assert not request_body.nesting_exceeds(text.encode("utf-16"), 30)


def test_nesting_scan_of_a_huge_attack_is_quick():
    started = time.monotonic()
    assert request_body.nesting_exceeds(b"[" * 4_000_000 + b"]" * 4_000_000, 100)
    assert request_body.nesting_exceeds(b'{"a":' * 200_000 + b"1" + b"}" * 200_000, 100)
    assert time.monotonic() - started < 5  # generous: the point is "not quadratic", not a timing


def exact_way(raw: bytes, limit: int):
    """What the body reader answered before it leant on the parser's own limit: the depth measured on
    the bytes, then the text parsed."""
    from cdshooks.service import jsoncodec

    if request_body.nesting_exceeds(raw, limit):
        return "too deep"
    try:
        return jsoncodec.loads(raw)
    except ValueError:
        return "not JSON"


def body_reader(raw: bytes, limit: int):
    from cdshooks.service.errors import InvalidRequest

    try:
        return request_body.parse_json(raw, limit)
    except InvalidRequest as exc:
        return "too deep" if "nests" in str(exc) else "not JSON"


def test_the_parser_reads_1024_levels_and_refuses_1025():
    # what the body reader leans on (orjson 3.9.15 and later, measured at import)
    assert request_body._PARSER_DEPTH == 1024


# texts that are not one JSON value, yet would parse inside the arrays the reader wraps a body in
# were it not for its check that each of them holds exactly one element
broken_out = ["1],[2", "1,2", "]", "[1]]", "{}],[{}", '"a"],["b"', "[]],[[]", "1]]]],[[[[2", " ] [ ", "[1],",
              ",[1]", "{}]", "[{}]]"]


@pytest.mark.parametrize("text", broken_out)
@pytest.mark.parametrize("limit", [0, 1, 5, 100, 1023])
def test_a_text_that_is_not_one_json_value_is_refused(text, limit):
    # refused as the exact way refuses it (for text that is not JSON at all, its depth may be the reason given)
    answer = body_reader(text.encode(), limit)
    assert answer in ("not JSON", "too deep") and answer == exact_way(text.encode(), limit)
    if limit >= len(text):
        assert answer == "not JSON"


@settings(max_examples=400, deadline=None, derandomize=True)
@given(value=json_values, limit=st.integers(min_value=0, max_value=12), ascii_only=st.booleans(),
       cut=st.integers(min_value=0, max_value=60), tail=st.sampled_from(["", "]", ",[1]", "}", " ", "x", "]["]))
def test_the_body_reader_answers_as_the_exact_way(value, limit, ascii_only, cut, tail):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    for text in (raw, raw[cut:] + tail.encode(), raw[:cut] + tail.encode()):
        if text:
            assert body_reader(text, limit) == exact_way(text, limit), text


@pytest.mark.parametrize("text, limit", [
    ("[" * 100 + "]" * 100, 100), ("[" * 101 + "]" * 101, 100), ('{"a":' * 100 + "1" + "}" * 100, 100),
    ('{"a":' * 101 + "1" + "}" * 101, 100), ("[" * 1024 + "]" * 1024, 1024), ("[" * 1025 + "]" * 1025, 1024),
    ("[" * 1500 + "]" * 1500, 2000), ('[NaN, Infinity, "\\ud800"]', 100), ('\ufeff{"a": 1}', 100),
])
def test_the_body_reader_at_and_past_the_limits(text, limit):
    for raw in (text.encode(), text.encode("utf-16")):
        assert same(body_reader(raw, limit), exact_way(raw, limit))


def test_json_bodies_are_read_in_one_parse(monkeypatch):
    # a JSON body within the limit, up to it, is read by the parser alone: the scan of the bytes is for
    # what that parse refuses
    def no_scan(raw, limit):
        raise AssertionError("the bytes were scanned")

    monkeypatch.setattr(request_body, "nesting_exceeds", no_scan)
    for text, limit in [("[" * 100 + "]" * 100, 100), ('{"a":' * 100 + '"[[["' + "}" * 100, 100),
                        (json.dumps(hook_request("order-select")), 100), ("[1]", 1)]:
        assert request_body.parse_json(text.encode(), limit) == json.loads(text)


def same(a, b) -> bool:
    """``a == b`` for values nested too deeply for Python's recursive comparison (NaN equal to NaN)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif x != y and not (isinstance(x, float) and x != x and y != y):
            return False
    return True


@pytest.mark.parametrize("path, make", [
    (PV, lambda deep: '{"hook":"patient-view","context":' + deep + "}"),
    (PV, lambda deep: '{"hook":"patient-view","hookInstance":"x","context":{},"prefetch":{"a":' + deep + "}}"),
    (FEEDBACK, lambda deep: '{"feedback":' + deep + "}"),
    (FEEDBACK, lambda deep: '{"feedback":[{"card":"c","outcome":"overridden","extension":' + deep + "}]}"),
])
@pytest.mark.parametrize("levels", [150, 1000, 100_000])
def test_deeply_nested_bodies_are_400_before_parsing(client, path, make, levels):
    deep = "[" * levels + "]" * levels
    issue = outcome(post(client, path, make(deep)), 400)
    assert "nests" in issue["diagnostics"] and issue["expression"] == ["(body)"]


def test_a_body_at_the_depth_limit_is_read(app, client):
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    body["extension"] = {"x": json.loads("[" * 97 + "]" * 97)}  # body -> extension -> x -> 97 arrays = 99
    assert client.hook(PV.rsplit("/", 1)[1], body).status_code == 200


def test_the_depth_limit_is_a_setting(tmp_path):
    app = create_app(make_settings(tmp_path, max_json_depth=3))
    issue = outcome(post(app.test_client(), FEEDBACK, '{"feedback":[{"card":{"a":[1]}}]}'), 400)
    assert "3 levels" in issue["diagnostics"]


# -- malformed Bundles --------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", [5, "x", {"resource": {}}, True])
def test_a_prefetch_bundle_whose_entry_is_not_an_array_is_unusable_not_a_5xx(app, client, entry):
    """Such a value is not data: it is fetched from fhirServer, and with none allowed the answer is 412."""
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    key = sorted(body["prefetch"])[0]
    body["prefetch"][key] = {"resourceType": "Bundle", "type": "searchset", "entry": entry}
    issue = outcome(client.post(PV, json=body), 412)
    assert issue["expression"] == [f"prefetch.{key}"]


@pytest.mark.parametrize("entries", [
    [{"resource": {"id": "x", "code": {"text": "twitching"}}}],                      # no resourceType, first
    [{"resource": {"id": "x"}}, {"resource": {"resourceType": "Condition", "id": "c"}}],
    [{"resource": {"resourceType": 7, "id": "x"}}],
    [{"resource": {"resourceType": "Bundle", "entry": 5}}],                         # a nested Bundle
    [5, None, "x", [], {"resource": []}, {"resource": "Condition/1"}, {}],
    [{"fullUrl": 5, "resource": {"resourceType": "Condition"}}, {"fullUrl": "urn:uuid:1", "resource": {}}],
])
def test_malformed_entries_inside_a_bundle_are_not_a_5xx(app, client, entries):
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    for key in body["prefetch"]:
        body["prefetch"][key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    app.config["PROPAGATE_UNEXPECTED"] = False
    resp = client.post(PV, json=body)
    assert resp.status_code in (200, 400, 412), resp.get_data(as_text=True)


@pytest.mark.parametrize("draft_orders", [
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Bundle", "entry": 5}}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"id": "no-type"}}, {"resource": 3}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Bundle", "entry": "x"}}]}}]},
])
def test_malformed_draft_orders_are_not_a_5xx(app, client, draft_orders):
    body = hook_request("order-sign", prefetch=empty_prefetch(app, "order-sign"), draftOrders=draft_orders)
    app.config["PROPAGATE_UNEXPECTED"] = False
    resp = client.post(SIGN, json=body)
    assert resp.status_code in (200, 400), resp.get_data(as_text=True)


# -- how many items one request may carry -------------------------------------------------------------
def test_feedback_over_the_item_cap_is_413_and_nothing_is_stored(tmp_path):
    app = create_app(make_settings(tmp_path, max_feedback_items=5))
    client = app.test_client()
    issue = outcome(client.post(FEEDBACK, json={"feedback": [feedback_item(n) for n in range(6)]}), 413)
    assert issue["code"] == "too-costly" and issue["expression"] == ["feedback"]
    assert app.extensions["cdshooks"].store.feedback_rows() == []
    ok = client.post(FEEDBACK, json={"feedback": [feedback_item(n) for n in range(5)]})
    assert ok.status_code == 200 and ok.get_json()["stored"] == 5


def test_feedback_that_fails_validation_stores_nothing(client, app):
    items = [feedback_item(1), feedback_item(2), {"card": "c3", "outcome": "maybe", "outcomeTimestamp": "x"}]
    outcome(client.post(FEEDBACK, json={"feedback": items}), 400)
    assert app.extensions["cdshooks"].store.feedback_rows() == []


def test_the_default_feedback_cap_answers_a_flood_promptly(client, app):
    started = time.monotonic()
    outcome(client.post(FEEDBACK, json={"feedback": [feedback_item(n) for n in range(100_000)]}), 413)
    assert time.monotonic() - started < 10  # refused before validation or storage, not after 30 s
    assert app.extensions["cdshooks"].store.feedback_rows() == []


def test_draft_orders_over_the_cap_are_413_and_nothing_is_recorded(tmp_path):
    app = create_app(make_settings(tmp_path, max_draft_orders=3))
    client = app.test_client()
    nested = {"resourceType": "Bundle", "entry": [draft(1), draft(2), {"resource": {
        "resourceType": "Bundle", "entry": [draft(3), draft(4)]}}]}
    body = hook_request("order-sign", prefetch=empty_prefetch(app, "order-sign"), draftOrders=nested)
    issue = outcome(client.post(SIGN, json=body), 413)
    assert issue["expression"] == ["context.draftOrders"]
    assert issued_count(app) == 0
    body["context"]["draftOrders"]["entry"] = [draft(1), draft(2), draft(3)]
    assert client.post(SIGN, json=body).status_code == 200


def test_the_default_draft_cap_answers_a_flood_promptly(app, client):
    bundle = {"resourceType": "Bundle", "entry": [draft(n) for n in range(20_000)]}
    body = hook_request("order-sign", prefetch=empty_prefetch(app, "order-sign"), draftOrders=bundle)
    started = time.monotonic()
    outcome(client.post(SIGN, json=body), 413)
    assert time.monotonic() - started < 10


# -- sizes ----------------------------------------------------------------------------------------------
def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(tmp_path):
    app = create_app(make_settings(tmp_path, max_body_bytes=2000))
    client = app.test_client()
    body = json.dumps({"feedback": [feedback_item(1)]})
    exact = body[:-1] + " " * (2000 - len(body)) + "}"
    assert len(exact) == 2000
    assert post(client, FEEDBACK, exact).status_code == 200
    outcome(post(client, FEEDBACK, exact + " "), 413)


def test_a_streamed_body_over_the_limit_is_413(tmp_path):
    """A body sent without Content-Length (as a chunked one reaches the app) is cut at the limit: 413."""
    app = create_app(make_settings(tmp_path, max_body_bytes=2000))
    body = json.dumps({"feedback": [feedback_item(1)], "pad": " " * 5000}).encode()
    import io

    resp = app.test_client().post(FEEDBACK, input_stream=io.BytesIO(body), content_type="application/json",
                                  environ_overrides={"wsgi.input_terminated": True})
    outcome(resp, 413)
    small = json.dumps({"feedback": [feedback_item(1)]}).encode()
    resp = app.test_client().post(FEEDBACK, input_stream=io.BytesIO(small), content_type="application/json",
                                  environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 200, resp.get_data(as_text=True)


class _BrokenInput:
    """A server's input that gives part of the announced body, then ends (or breaks off with an error)."""

    def __init__(self, data: bytes, error: type[Exception] | None = None):
        self.data, self.error = data, error

    def read(self, size: int = -1) -> bytes:
        if not self.data:
            if self.error is not None:
                raise self.error("connection reset")
            return b""
        out, self.data = self.data[:max(1, min(size, 7))], self.data[max(1, min(size, 7)):]  # short reads
        return out


@pytest.mark.parametrize("error", [None, OSError, ValueError])
def test_a_body_shorter_than_its_content_length_is_400(app, client, error):
    """The body is read with the length it announced, from the server's input; when the input ends (or
    breaks) before that many bytes, the answer is a 400 that says so, never a 5xx nor a parse of half a body."""
    whole = json.dumps(hook_request("patient-view", patient_id="p1", prefetch=empty_prefetch(app, "patient-view")))
    part = whole.encode()[:40]
    resp = client.post(PV, data=b"", content_type="application/json",
                       environ_overrides={"wsgi.input": _BrokenInput(part, error), "CONTENT_LENGTH": str(len(whole))})
    assert "ended before it was complete" in outcome(resp, 400)["diagnostics"]
    read_slowly = client.post(PV, data=b"", content_type="application/json",
                              environ_overrides={"wsgi.input": _BrokenInput(whole.encode()),
                                                 "CONTENT_LENGTH": str(len(whole))})
    assert read_slowly.status_code == 200, read_slowly.get_data(as_text=True)[:300]  # short reads, all arrived


# -- the request deadline ------------------------------------------------------------------------------
@pytest.fixture
def slow_rule():
    def sleepy(call):
        time.sleep(0.3)
        return [Card(summary="Late card", indicator="info", detail=render_detail(["a fact"], ["a line"]))]

    rules.rule(id="zz-test-slow", title="slow", hooks=("patient-view",), indicator="info", reads={},
               source=rules.Source("000", ("Test",)))(sleepy)
    yield
    rules._REGISTRY.pop("zz-test-slow", None)


def test_a_call_past_its_deadline_is_503_and_records_nothing(tmp_path, slow_rule):
    app = create_app(make_settings(tmp_path, request_deadline=0.2))
    client = app.test_client()
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    started = time.monotonic()
    issue = outcome(client.post(PV, json=body), 503)
    assert issue["code"] == "timeout"
    assert time.monotonic() - started < 2
    assert issued_count(app) == 0


def test_the_same_call_within_its_deadline_answers(tmp_path, slow_rule):
    app = create_app(make_settings(tmp_path, request_deadline=5))
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    resp = app.test_client().post(PV, json=body)
    assert resp.status_code == 200 and [c["summary"] for c in resp.get_json()["cards"]] == ["Late card"]
    assert issued_count(app) == 1


def test_feedback_past_its_deadline_is_503_and_stores_nothing(tmp_path, monkeypatch):
    app = create_app(make_settings(tmp_path, request_deadline=0.05))
    real_validate = endpoints.validate

    def slow_validate(*args, **kwargs):
        time.sleep(0.1)
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(endpoints, "validate", slow_validate)
    outcome(app.test_client().post(FEEDBACK, json={"feedback": [feedback_item(1)]}), 503)
    assert app.extensions["cdshooks"].store.feedback_rows() == []


# -- production ---------------------------------------------------------------------------------------
def test_authentication_off_is_refused_in_production():
    with pytest.raises(ConfigError, match="CDSHOOKS_AUTH=off"):
        Settings(env="production", auth="off").checked()
    with pytest.raises(ConfigError, match="CDSHOOKS_AUTH=off"):
        Settings.from_env({"CDSHOOKS_ENV": "production", "CDSHOOKS_AUTH": "off"})


def test_the_benchmark_floor_exists_only_outside_production(tmp_path):
    dev = create_app(make_settings(tmp_path / "dev")).test_client()
    assert post(dev, "/_bench/parse", "{}").status_code == 200
    prod_app = create_app(make_settings(tmp_path / "prod", env="production"))
    resp = post(prod_app.test_client(), "/_bench/parse", "{}")
    outcome(resp, 404)
    assert "/_bench/parse" not in {r.rule for r in prod_app.url_map.iter_rules()}
    prod_app.extensions["cdshooks"].store.dispose()


@pytest.mark.parametrize("name, value", [("CDSHOOKS_MAX_JSON_DEPTH", "0"), ("CDSHOOKS_MAX_FEEDBACK_ITEMS", "0"),
                                         ("CDSHOOKS_MAX_DRAFT_ORDERS", "-1"), ("CDSHOOKS_REQUEST_DEADLINE", "0"),
                                         ("CDSHOOKS_MAX_DRAFT_ORDERS", "many")])
def test_limits_must_be_positive_numbers(name, value):
    with pytest.raises(ConfigError):
        Settings.from_env({name: value})


def test_a_huge_code_costs_no_more_than_its_length(app, client):
    """A 200,000-character ICD-10-CM code once made indexing quadratic (a prefix of every length)."""
    body = hook_request("patient-view", prefetch=empty_prefetch(app, "patient-view"))
    condition = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p1"},
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25." + "1" * 200_000}]}}
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": condition}]}
    started = time.monotonic()
    assert client.post(PV, json=body).status_code == 200
    assert time.monotonic() - started < 5
