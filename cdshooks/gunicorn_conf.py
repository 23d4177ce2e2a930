"""gunicorn settings for ``make serve`` and the container: ``gunicorn -c python:cdshooks.gunicorn_conf``.

Bind address and port come from CDSHOOKS_HOST / CDSHOOKS_PORT; the worker count from
CDSHOOKS_WORKERS (default: 2 x cores + 1). Sync workers: each hook call is short and
CPU-bound, and the FHIR fallback has its own bounded thread pool.
"""

import multiprocessing
import os

bind = f"{os.environ.get('CDSHOOKS_HOST', '127.0.0.1')}:{os.environ.get('CDSHOOKS_PORT', '8080')}"
workers = int(os.environ.get("CDSHOOKS_WORKERS", 2 * multiprocessing.cpu_count() + 1))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None  # request lines can carry identifiers in query strings; the app logs what is safe
errorlog = "-"
loglevel = os.environ.get("CDSHOOKS_LOG_LEVEL", "info").lower()
