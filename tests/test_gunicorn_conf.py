"""gunicorn settings: the worker count follows the container's CPU quota, and the preloaded app
serves hook calls and feedback from forked workers (each with its own database connections)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from cdshooks import gunicorn_conf
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.tryit.fixtures import for_scenario, scenarios

from .served import serve_gunicorn

REPO = Path(__file__).resolve().parent.parent


def _cgroup(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


@pytest.fixture
def cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    return 8


def test_no_quota_means_the_cpus_the_process_may_run_on(tmp_path, cpus):
    assert gunicorn_conf.cpu_limit(str(tmp_path)) == cpus
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path, {"cpu.max": "max 100000\n"})) == cpus


def test_cgroup_v2_quota(tmp_path, cpus):
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path, {"cpu.max": "200000 100000\n"})) == 2
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path, {"cpu.max": "150000 100000\n"})) == 2  # 1.5 CPUs: 2
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path, {"cpu.max": "50000 100000\n"})) == 1
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path, {"cpu.max": "1600000 100000\n"})) == cpus  # above the CPUs


def test_cgroup_v1_quota(tmp_path, cpus):
    v1 = {"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path / "a", v1)) == 3
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path / "b", {"cpu/cpu.cfs_quota_us": "-1\n",
                                                            "cpu/cpu.cfs_period_us": "100000\n"})) == cpus
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path / "c", {"cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
                                                            "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})) == 1


def test_unreadable_quota_is_ignored(tmp_path, cpus):
    assert gunicorn_conf.cpu_limit(_cgroup(tmp_path, {"cpu.max": "garbage\n"})) == cpus


def test_the_default_worker_count_is_one_more_than_the_cpus(monkeypatch, cpus):
    """A worker per CPU and one spare (each has its request threads), unless CDSHOOKS_WORKERS says."""
    import importlib

    monkeypatch.delenv("CDSHOOKS_WORKERS", raising=False)
    try:
        assert importlib.reload(gunicorn_conf).workers == gunicorn_conf.cpu_limit() + 1
        monkeypatch.setenv("CDSHOOKS_WORKERS", "2")
        assert importlib.reload(gunicorn_conf).workers == 2
    finally:
        monkeypatch.undo()
        importlib.reload(gunicorn_conf)


def test_the_app_is_preloaded():
    assert gunicorn_conf.preload_app is True


def test_preloaded_workers_answer_and_find_their_issued_cards(tmp_path):
    """Two forked workers answer hook calls; feedback on every card finds its issued record; the
    app (and its warm-up) was built once, in the master."""
    with serve_gunicorn(tmp_path, CDSHOOKS_WORKERS="2",
                        CDSHOOKS_DATABASE_URL=f"sqlite:///{tmp_path / 'shared.sqlite'}") as (base, log):
        discovery = requests.get(base + "/cds-services", timeout=5).json()["services"]
        sc = next(s for s in scenarios() if s.hook == "patient-view" and s.fires)
        service_id = SERVICE_IDS[sc.hook]
        templates = next(s for s in discovery if s["id"] == service_id)["prefetch"]
        cards = []
        for _ in range(8):
            resp = requests.post(f"{base}/cds-services/{service_id}", json=for_scenario(sc, templates),
                                 headers={"Connection": "close"}, timeout=10)
            assert resp.status_code == 200, resp.text
            assert resp.headers["Content-Type"] == "application/json"
            cards += resp.json()["cards"]
        assert cards
        feedback = {"feedback": [{"card": c["uuid"], "outcome": "overridden",
                                  "outcomeTimestamp": "2026-01-01T00:00:00Z"} for c in cards]}
        for _ in range(50):  # issued-card records may be written just behind the response
            resp = requests.post(f"{base}/cds-services/{service_id}/feedback", json=feedback, timeout=10)
            assert resp.status_code == 200, resp.text
            counts = resp.json()
            if counts["unknownCards"] == 0:
                break
            time.sleep(0.1)
        assert counts["unknownCards"] == 0 and counts["stored"] == len(cards), counts
    started = [json.loads(line) for line in log.read_text().splitlines()
               if line.startswith("{") and '"service.started"' in line]
    assert len(started) == 1, "create_app ran once, in the master, not once per worker"
    assert started[0]["warm_up_ms"] > 0
    # each worker's warm-up calls through its own request path were answered, and quietly
    assert "worker_warm_up_failed" not in log.read_text()
    answered = [line for line in log.read_text().splitlines() if '"hook.answered"' in line]
    assert len(answered) == 8, "only the clients' calls are logged"


def test_each_worker_warms_itself_before_its_first_call(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from cdshooks import create_app
    from cdshooks.service import warmup

    from .conftest import make_settings

    app = create_app(make_settings(tmp_path))
    calls = []
    original = warmup.warm_worker
    monkeypatch.setattr(warmup, "warm_worker", lambda a, *rest: calls.append(a) or original(a, *rest))
    rehearsed: list[tuple[bytes, dict]] = []

    def rehearse(raw: bytes, environ: dict) -> bytes:  # the worker's own request path (serving/worker.py)
        rehearsed.append((raw, environ))
        return b"HTTP/1.1 200 OK\r\n\r\n"

    try:
        gunicorn_conf.post_worker_init(SimpleNamespace(wsgi=app, rehearse=rehearse))
        assert calls == [app]
        assert sorted(raw.split(b" ", 2)[1].decode() for raw, _ in rehearsed) == sorted(
            f"/cds-services/{sid}" for sid in app.extensions["cdshooks"].engine.services)
        assert all(environ == {warmup.WARM_UP_ENVIRON: True} for _, environ in rehearsed)
        store = app.extensions["cdshooks"].store
        assert store.ping()
        assert store._writer is not None and store._writer._thread is not None  # started before any call
        assert store._writer._thread.is_alive()
        gunicorn_conf.post_worker_init(SimpleNamespace(wsgi=lambda environ, start: []))  # not this app: nothing
        assert calls == [app]
    finally:
        app.extensions["cdshooks"].store.dispose()
