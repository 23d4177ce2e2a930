"""Start-up warm-up: no hook call is a worker's cold first call, and the warm-up leaves no trace."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from cdshooks import create_app
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.service.warmup import WARM_UP_ENVIRON, WORKER_HISTORY, warm_up_request, warm_worker

from ..conftest import make_settings

REPO = Path(__file__).resolve().parent.parent.parent

# In a fresh process: build the app, then answer every fixture scenario and list the modules that
# the calls imported. Anything a first call would have to load shows up here.
_PROBE = """
import json, sys
from cdshooks import create_app
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.tryit.fixtures import for_scenario, scenarios
app = create_app()
client = app.test_client()
engine = app.extensions["cdshooks"].engine
bodies = [(SERVICE_IDS[sc.hook], for_scenario(sc, engine.services[SERVICE_IDS[sc.hook]].prefetch))
          for sc in scenarios()]
before = set(sys.modules)
statuses = [client.post(f"/cds-services/{sid}", json=body).status_code for sid, body in bodies]
print(json.dumps({"statuses": sorted(set(statuses)), "calls": len(statuses),
                  "imported": sorted(set(sys.modules) - before)}))
"""


def test_no_call_imports_anything_after_start_up(tmp_path):
    env = dict(os.environ, CDSHOOKS_ENV="test", CDSHOOKS_AUTH="off", CDSHOOKS_LOG_LEVEL="ERROR",
               CDSHOOKS_INSTANCE_PATH=str(tmp_path), CDSHOOKS_DATABASE_URL=f"sqlite:///{tmp_path / 'w.sqlite'}")
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200] and result["calls"] > 50
    assert result["imported"] == []


def test_warm_up_records_nothing_and_logs_one_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cdshooks"):
        app = create_app(make_settings(tmp_path, log_level="INFO"))
    try:
        events = [r.getMessage() for r in caplog.records]
        assert "hook.answered" not in events and "rule.failed" not in events
        assert events.count("service.started") == 1
        store = app.extensions["cdshooks"].store
        with store.engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT COUNT(*) FROM issued_card")).scalar() == 0
    finally:
        app.extensions["cdshooks"].store.dispose()


def test_the_warm_up_calls_reach_the_rules(tmp_path):
    """The synthetic calls are answered with cards (so the rules' code paths are exercised)."""
    app = create_app(make_settings(tmp_path))
    try:
        engine = app.extensions["cdshooks"].engine
        for hook, service_id in SERVICE_IDS.items():
            cards = engine.answer(service_id, warm_up_request(engine.services[service_id]))["cards"]
            assert len(cards) >= 3, hook
    finally:
        app.extensions["cdshooks"].store.dispose()


def _issued_cards(app) -> int:
    from sqlalchemy import text

    store = app.extensions["cdshooks"].store
    store.flush()
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM issued_card")).scalar()


def _hook_requests(service_id: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("cdshooks_http_request_duration_seconds_count",
                                     {"endpoint": "hook", "service": service_id, "status": "200"}) or 0.0


def test_a_worker_warms_up_through_the_whole_app_and_leaves_no_trace(tmp_path, caplog):
    """One realistic call per hook through Flask, even where a client JWT is required; nothing
    recorded as issued, logged or counted as traffic."""
    app = create_app(make_settings(tmp_path, env="production", log_level="INFO"))
    engine = app.extensions["cdshooks"].engine
    answered: list[tuple[str, int]] = []
    original = engine.outcome

    def counting(service_id, body, *args, **kwargs):
        outcome = original(service_id, body, *args, **kwargs)
        answered.append((service_id, len(outcome.cards)))
        return outcome

    engine.outcome = counting
    before = {sid: _hook_requests(sid) for sid in SERVICE_IDS.values()}
    try:
        with caplog.at_level(logging.DEBUG, logger="cdshooks"):
            caplog.clear()
            assert warm_worker(app) > 0
        assert sorted(sid for sid, _ in answered) == sorted(SERVICE_IDS.values())
        assert all(cards >= 3 for _, cards in answered), answered  # the rules ran on the record
        assert not caplog.records, "the warm-up logs nothing"
        assert _issued_cards(app) == 0
        assert {sid: _hook_requests(sid) for sid in SERVICE_IDS.values()} == before
        assert not engine._warming and engine.store is not None  # quiet mode ended
    finally:
        app.extensions["cdshooks"].store.dispose()


def test_the_worker_record_is_a_realistic_history():
    service = type("S", (), {"hook": "patient-view", "prefetch": {"labs": "Observation?patient={{context.patientId}}"}})
    body = warm_up_request(service, WORKER_HISTORY)
    entries = body["prefetch"]["labs"]["entry"]
    assert len(entries) >= WORKER_HISTORY
    assert len({e["resource"]["id"] for e in entries}) == len(entries)


def test_no_client_can_pass_for_the_warm_up(tmp_path):
    """The warm-up's mark is a WSGI environ key; a request header of any such name is not it."""
    app = create_app(make_settings(tmp_path, env="production"))
    try:
        client = app.test_client()
        body = warm_up_request(app.extensions["cdshooks"].engine.services[SERVICE_IDS["patient-view"]])
        for header in (WARM_UP_ENVIRON, "cdshooks-warm-up", "X-Cdshooks-Warm-Up"):
            resp = client.post(f"/cds-services/{SERVICE_IDS['patient-view']}", json=body, headers={header: "True"})
            assert resp.status_code == 401, header
        assert _issued_cards(app) == 0
    finally:
        app.extensions["cdshooks"].store.dispose()


def test_start_up_learns_the_common_problem_list_shapes_in_any_element_order(tmp_path):
    """After start-up, a Condition in each shape problem lists commonly come in is read without the
    models (the fast path), also with its elements in another order, as another EHR writes them."""
    from cdshooks.fhir import models
    from cdshooks.service.warmup import _CONDITION_SHAPES, _condition

    app = create_app(make_settings(tmp_path))
    try:
        subject = {"reference": "Patient/p7"}
        for shape in range(len(_CONDITION_SHAPES)):
            condition = _condition("c7", subject, "2020-02-02", "http://snomed.info/sct", "55300003", shape)
            backwards = {key: condition[key] for key in reversed(list(condition))}
            for resource in (condition, backwards):
                reading = models.read(resource)
                assert reading.lazy and reading.problems == [], _CONDITION_SHAPES[shape]
    finally:
        app.extensions["cdshooks"].store.dispose()


def test_a_worker_warms_up_on_each_of_its_request_threads(tmp_path):
    """With the worker's thread pool, every one of its threads answers the warm-up calls (its stack
    and thread-local state readied), all quietly."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(make_settings(tmp_path))
    engine = app.extensions["cdshooks"].engine
    seen: list[tuple[int, str]] = []
    original = engine.outcome

    def noting(service_id, *args, **kwargs):
        seen.append((threading.get_ident(), service_id))
        return original(service_id, *args, **kwargs)

    engine.outcome = noting
    pool = ThreadPoolExecutor(max_workers=3)
    try:
        assert warm_worker(app, pool, 3) > 0
        threads = {ident for ident, _ in seen}
        assert len(threads) == 3 and threading.get_ident() not in threads
        assert sorted(seen) == sorted((ident, sid) for ident in threads for sid in SERVICE_IDS.values())
        assert _issued_cards(app) == 0 and not engine._warming
    finally:
        pool.shutdown()
        app.extensions["cdshooks"].store.dispose()


# -- through the worker's own request path --------------------------------------------------

def _worker(app, threads: int = 2):
    """The production worker, in this process, ready as gunicorn readies it before its first call
    (its request threads; no listening socket: ``rehearse`` needs none)."""
    from gunicorn.config import Config

    from cdshooks.serving.logger import JsonLogger
    from cdshooks.serving.worker import BufferingWorker

    cfg = Config()
    cfg.set("threads", threads)
    worker = BufferingWorker(0, os.getpid(), [], None, 30, cfg, JsonLogger(cfg))
    worker.wsgi = app
    worker.tpool = worker.get_thread_pool()
    return worker


def test_a_worker_warms_up_through_its_own_request_path_and_leaves_no_trace(tmp_path, caplog):
    """One realistic call per hook read by the worker's buffer, parsed by gunicorn's parser on a
    request thread and answered through a socket, even where a client JWT is required; nothing
    recorded as issued, logged or counted as traffic, and the worker's app is its own again."""
    import threading

    from cdshooks.service.warmup import warm_serving

    app = create_app(make_settings(tmp_path, env="production", log_level="INFO"))
    engine = app.extensions["cdshooks"].engine
    seen: list[tuple[int, str, int]] = []
    original = engine.outcome

    def noting(service_id, *args, **kwargs):
        outcome = original(service_id, *args, **kwargs)
        seen.append((threading.get_ident(), service_id, len(outcome.cards)))
        return outcome

    engine.outcome = noting
    worker = _worker(app)
    before = {sid: _hook_requests(sid) for sid in SERVICE_IDS.values()}
    try:
        with caplog.at_level(logging.DEBUG):
            caplog.clear()
            assert warm_serving(app, worker.rehearse) == len(SERVICE_IDS)
        assert sorted(sid for _, sid, _ in seen) == sorted(SERVICE_IDS.values())
        assert all(cards >= 3 for _, _, cards in seen), seen  # the rules ran on the record
        assert threading.get_ident() not in {ident for ident, _, _ in seen}  # on a request thread
        assert not [r for r in caplog.records if r.name.startswith("cdshooks")], "the warm-up logs nothing"
        assert _issued_cards(app) == 0
        assert {sid: _hook_requests(sid) for sid in SERVICE_IDS.values()} == before
        assert worker.wsgi is app and not engine._warming and engine.store is not None
        assert worker.nr_conns == 0 and not worker.reading
    finally:
        worker.tpool.shutdown()
        app.extensions["cdshooks"].store.dispose()


def test_a_rehearsal_answers_as_a_client_would_be_answered_and_never_raises(tmp_path):
    """Without the warm-up's environ key the same request is a client's (401 where a JWT is
    required); bytes that are not HTTP get the parser's 400; an app that fails gets gunicorn's
    answer; none of them raises, and the worker's app is restored each time."""
    app = create_app(make_settings(tmp_path, env="production"))
    worker = _worker(app, threads=1)
    service = app.extensions["cdshooks"].engine.services[SERVICE_IDS["patient-view"]]
    body = json.dumps(warm_up_request(service)).encode()
    raw = (f"POST /cds-services/{service.id} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        assert worker.rehearse(raw, {WARM_UP_ENVIRON: True}).startswith(b"HTTP/1.1 200 ")
        assert worker.rehearse(raw).startswith(b"HTTP/1.1 401 ")
        refused = worker.rehearse(b"NOT HTTP AT ALL\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 400 ") and b"OperationOutcome" in refused

        def failing(environ, start_response):
            raise RuntimeError("boom")

        worker.wsgi = failing
        answer = worker.rehearse(raw)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 500 ")
        assert worker.wsgi is failing
    finally:
        worker.tpool.shutdown()
        app.extensions["cdshooks"].store.dispose()


def test_a_server_path_that_does_not_answer_is_said_once(tmp_path, caplog):
    """A worker whose own request path answers a warm-up call with anything but 200 still serves;
    one warning says so (no patient data: there is none in a warm-up)."""
    from cdshooks.service.warmup import warm_serving

    app = create_app(make_settings(tmp_path))
    try:
        with caplog.at_level(logging.WARNING, logger="cdshooks"):
            assert warm_serving(app, lambda raw, environ: b"HTTP/1.1 500 Internal Server Error\r\n\r\n") == 0
            assert warm_serving(app, lambda raw, environ: 1 / 0) == 0
        failed = [r for r in caplog.records if r.getMessage() == "service.worker_warm_up_failed"]
        assert len(failed) == 2
        assert not app.extensions["cdshooks"].engine._warming
    finally:
        app.extensions["cdshooks"].store.dispose()
