"""Fault FHIR: the dev FHIR endpoint plus misbehaving variants, for tests of the service's FHIR client.

``create_app()`` builds a Flask app (serve it with ``loopback.serve_wsgi``) that answers:

* ``/fhir/...``: the scenario fixtures (``cdshooks.devfhir.blueprint``), behaving well;
* ``/slow/fhir/...``: the same after sleeping ``Faults.slow_seconds`` (or ``?_delay=S``; at most 30 s);
* ``/error500/fhir/...``: 500 with an OperationOutcome;
* ``/unauthorized/fhir/...``: 401 unless ``Authorization: Bearer good-token`` (``GOOD_TOKEN``),
  then the fixtures;
* ``/malformed/fhir/...``: 200 ``application/fhir+json`` whose body is not JSON;
* ``/outcome/fhir/...``: 200 with an OperationOutcome instead of a Bundle;
* ``/redirect/fhir/...``: 302 to the same path under ``/fhir`` on another host name
  (``Faults.redirect_host``, default ``localhost``: same server, different origin);
* ``/huge/fhir/...``: the fixtures' answer padded with trailing whitespace past
  ``Faults.huge_bytes`` (or ``?_bytes=N``); with ``Faults.huge_chunked`` it is streamed
  without ``Content-Length``;
* ``/paged/fhir/...``: the fixtures with ``_count`` capped at 2, so every search pages.

Every request is logged in ``Faults.requests`` (variant, method, path, query, and whether an
``Authorization`` header arrived -- never its value). ``faults(app)`` returns the state.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from flask import Flask, Response, redirect, request

from cdshooks.tryit.fhir_endpoint import FHIR_JSON, blueprint, outcome
from cdshooks.tryit.fixtures import FIXTURES_DIR

__all__ = ["create_app", "faults", "Faults", "LoggedRequest", "GOOD_TOKEN", "VARIANTS"]

GOOD_TOKEN = "good-token"
VARIANTS = ("fhir", "slow", "error500", "unauthorized", "malformed", "outcome", "redirect", "huge", "paged")
_MAX_SLEEP = 30.0


@dataclass(frozen=True)
class LoggedRequest:
    variant: str
    method: str
    path: str
    query: str
    authorization: bool


@dataclass
class Faults:
    """The knobs of the fault variants and the log of requests received."""

    slow_seconds: float = 3.0
    huge_bytes: int = 9 * 1024 * 1024
    huge_chunked: bool = False
    redirect_host: str = "localhost"
    requests: list[LoggedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def seen(self, variant: str | None = None) -> list[LoggedRequest]:
        """The requests logged so far (of one variant)."""
        with self._lock:
            return [r for r in self.requests if variant is None or r.variant == variant]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


def faults(app: Flask) -> Faults:
    return app.extensions["fault_fhir"]


def _variant() -> str:
    first = request.path.strip("/").split("/", 1)[0]
    return first if first in VARIANTS else ""


def create_app(folders: Iterable[str | Path] = (FIXTURES_DIR,), *,
               clock: Callable[[], datetime] | None = None, state: Faults | None = None) -> Flask:
    state = state or Faults()
    folders = list(folders)
    app = Flask(__name__)
    app.extensions["fault_fhir"] = state
    fixtures = blueprint(folders, "/fhir", clock=clock)
    app.register_blueprint(fixtures)
    for variant in ("slow", "unauthorized", "huge"):
        app.register_blueprint(fixtures, url_prefix=f"/{variant}/fhir", name=variant)
    app.register_blueprint(blueprint(folders, "/paged/fhir", max_count=2, clock=clock))

    @app.before_request
    def log_and_delay() -> Response | None:
        variant = _variant()
        state.log(LoggedRequest(variant, request.method, request.path, request.query_string.decode("latin-1"),
                                "Authorization" in request.headers))
        if variant == "slow":
            delay = request.args.get("_delay", type=float)
            time.sleep(max(0.0, min(delay if delay is not None else state.slow_seconds, _MAX_SLEEP)))
        if variant == "unauthorized" and request.headers.get("Authorization") != f"Bearer {GOOD_TOKEN}":
            response = outcome(401, "login", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="fault-fhir"'
            return response
        return None

    @app.after_request
    def pad(response: Response) -> Response:
        if _variant() != "huge" or response.status_code != 200:
            return response
        size = request.args.get("_bytes", type=int) or state.huge_bytes
        body = response.get_data()
        padding = max(0, size + 1 - len(body))
        if not state.huge_chunked:
            response.set_data(body + b" " * padding)
            return response

        def chunks() -> Iterable[bytes]:
            yield body
            left = padding
            while left > 0:
                yield b" " * min(left, 65536)
                left -= 65536

        return Response(chunks(), status=200, mimetype=FHIR_JSON)

    @app.route("/error500/fhir/<path:rest>", methods=["GET", "POST"])
    def error500(rest: str) -> Response:
        return outcome(500, "exception", "the server failed")

    @app.route("/malformed/fhir/<path:rest>", methods=["GET", "POST"])
    def malformed(rest: str) -> Response:
        return Response('{"resourceType": "Bundle", "type": "searchset", "entry": [', mimetype=FHIR_JSON)

    @app.route("/outcome/fhir/<path:rest>", methods=["GET", "POST"])
    def operation_outcome(rest: str) -> Response:
        return outcome(200, "processing", "the search could not be run")

    @app.route("/redirect/fhir/<path:rest>", methods=["GET", "POST"])
    def elsewhere(rest: str) -> Response:
        port = request.host.rsplit(":", 1)[1] if ":" in request.host else "80"
        query = request.query_string.decode("latin-1")
        target = f"http://{state.redirect_host}:{port}/fhir/{rest}" + (f"?{query}" if query else "")
        return redirect(target, code=302)

    return app
