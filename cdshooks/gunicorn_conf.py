"""gunicorn settings for ``make serve`` and the container: ``gunicorn -c python:cdshooks.gunicorn_conf``.

Bind address and port come from CDSHOOKS_HOST / CDSHOOKS_PORT; the worker count from
CDSHOOKS_WORKERS (default: CPUs + 1, where CPUs is the container's CPU quota when it has one, see
``cpu_limit``). A hook call is CPU work under one interpreter lock per process, and each worker
has its request threads for calls waiting on a FHIR server, so more processes than that only
take turns on the same cores: measured on 2 cores, 3 workers answer 8 concurrent clients 12%
faster than 5 (2 x CPUs + 1, gunicorn's rule for single-threaded workers), in less memory.

Workers are ``cdshooks.serving.worker.BufferingWorker``: gunicorn's threaded worker
(CDSHOOKS_THREADS threads per process, default 4), except that a request reaches a thread
only once it has fully arrived; until then its connection waits in the worker's event loop,
at most CDSHOOKS_CLIENT_TIMEOUT seconds (then 408). So clients that send half a body hold
no thread, and normal calls keep their latency beside them. gunicorn's own log lines are
JSON without request paths (``cdshooks.serving.logger.JsonLogger``).

The app is preloaded: rules, value sets, schemas and models are imported and warmed once in the
master (``create_app`` answers one synthetic call per hook) and shared copy-on-write by the
workers; each worker readies itself before it accepts a call (``post_worker_init``: its database
connection, writer thread, metric files, and one realistic call per hook through the app on each
of its request threads, see ``cdshooks/service/warmup.py``), so no worker's first call pays for any of it.
"""

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path


def cpu_limit(cgroup: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``)
    when one is set, else the CPUs it may run on; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    for quota_file, period_file in ((f"{cgroup}/cpu.max", None),
                                    (f"{cgroup}/cpu/cpu.cfs_quota_us", f"{cgroup}/cpu/cpu.cfs_period_us"),
                                    (f"{cgroup}/cpu,cpuacct/cpu.cfs_quota_us",
                                     f"{cgroup}/cpu,cpuacct/cpu.cfs_period_us")):
        try:
            with open(quota_file) as f:
                fields = f.read().split()
            if period_file is not None:
                with open(period_file) as f:
                    fields = [fields[0], f.read().strip()]
            quota, period = fields[0], fields[1] if len(fields) > 1 else "100000"
        except (OSError, IndexError):
            continue
        if quota in ("max", "-1") or not quota.lstrip("-").isdigit() or not period.isdigit():
            break
        if int(quota) > 0 and int(period) > 0:
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
        break
    return max(1, cpus)


bind = f"{os.environ.get('CDSHOOKS_HOST', '127.0.0.1')}:{os.environ.get('CDSHOOKS_PORT', '8080')}"
workers = int(os.environ.get("CDSHOOKS_WORKERS", cpu_limit() + 1))
worker_class = "cdshooks.serving.worker.BufferingWorker"
threads = int(os.environ.get("CDSHOOKS_THREADS", 4))
logger_class = "cdshooks.serving.logger.JsonLogger"
preload_app = True
timeout = 30
graceful_timeout = 10
keepalive = 5
# Request limits. A header line must hold the largest legitimate client JWT (the verifier accepts
# 16 KB; issuers with many claims send 15 KB): 32 KB per header field. The request line may carry
# the development /fhir endpoint's search URLs (prefetch templates stay under 8 KB). Bodies are
# limited by the app (CDSHOOKS_MAX_BODY_BYTES, chunked too), and every request is answered within
# CDSHOOKS_REQUEST_DEADLINE (10 s), well before the worker timeout.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 32768
accesslog = None  # request lines can carry identifiers in query strings; the app logs what is safe
errorlog = "-"
loglevel = os.environ.get("CDSHOOKS_LOG_LEVEL", "info").lower()


def when_ready(server):
    """The preloaded app, before the first fork: close its database connections (each worker opens its own)."""
    app = server.app.wsgi()
    state = getattr(app, "extensions", {}).get("cdshooks")
    if state is not None:
        state.store.dispose()
    _forget_metrics_of(os.getpid())  # the warm-up calls are not traffic


def worker_exit(server, worker):
    """A worker stops cleanly: write the issued-card records still queued (see store/writer.py)."""
    from cdshooks.store.writer import close_all

    close_all()


def child_exit(server, worker):
    """A worker is gone: drop its live gauges (its counters and histograms keep counting in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _forget_metrics_of(pid: int) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        for path in Path(folder).glob(f"*_{pid}.db"):
            path.unlink()


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


# Prometheus multiprocess mode: each worker writes its metrics to files in one folder and /metrics
# adds them up. The folder must be known before the app (preloaded) imports prometheus_client, so it
# is set here, when gunicorn reads this file: a fresh one (removed at exit) unless
# PROMETHEUS_MULTIPROC_DIR names one, which is then emptied of a previous run's values.
_OWN_METRICS_DIR = False
if "gunicorn" in Path(sys.argv[0]).as_posix():
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cdshooks-metrics-")
        _OWN_METRICS_DIR = True
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    for _stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        _stale.unlink()


def post_worker_init(worker):
    """A forked worker readies itself before it accepts its first call: its own database connection,
    its issued-card writer thread, its metric files, and one realistic call per hook through the
    whole app on each of its request threads (service/warmup.py), so that a first call finds
    everything in place."""
    app = worker.wsgi
    state = getattr(app, "extensions", {}).get("cdshooks")
    if state is not None:
        from cdshooks import metrics
        from cdshooks.service.warmup import warm_serving, warm_worker

        state.store.ping()
        state.store.start()
        metrics.prime(sorted(state.engine.services))
        warm_worker(app, getattr(worker, "tpool", None), getattr(getattr(worker, "cfg", None), "threads", 1))
        if hasattr(worker, "rehearse"):
            warm_serving(app, worker.rehearse)
