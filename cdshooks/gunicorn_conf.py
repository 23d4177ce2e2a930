"""gunicorn settings for ``make serve`` and the container: ``gunicorn -c python:cdshooks.gunicorn_conf``.

Bind address and port come from CDSHOOKS_HOST / CDSHOOKS_PORT; the worker count from
CDSHOOKS_WORKERS (default: 2 x cores + 1).

Workers are ``cdshooks.serving.worker.BufferingWorker``: gunicorn's threaded worker
(CDSHOOKS_THREADS threads per process, default 4), except that a request reaches a thread
only once it has fully arrived; until then its connection waits in the worker's event loop,
at most CDSHOOKS_CLIENT_TIMEOUT seconds (then 408). So clients that send half a body hold
no thread, and normal calls keep their latency beside them. gunicorn's own log lines are
JSON without request paths (``cdshooks.serving.logger.JsonLogger``).
"""

import multiprocessing
import os

bind = f"{os.environ.get('CDSHOOKS_HOST', '127.0.0.1')}:{os.environ.get('CDSHOOKS_PORT', '8080')}"
workers = int(os.environ.get("CDSHOOKS_WORKERS", 2 * multiprocessing.cpu_count() + 1))
worker_class = "cdshooks.serving.worker.BufferingWorker"
threads = int(os.environ.get("CDSHOOKS_THREADS", 4))
logger_class = "cdshooks.serving.logger.JsonLogger"
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
