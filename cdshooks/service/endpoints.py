"""API: the CDS Hooks HTTP endpoints, thin over the engine and the store.

    GET  /cds-services                  discovery
    POST /cds-services/<id>             a hook call
    POST /cds-services/<id>/feedback    feedback on issued cards
    (probes and /metrics: observability.py)
    (each also with a trailing slash, as some clients send it)
    GET  /openapi.json                  the OpenAPI 3.1 contract (service/openapi.py)

CORS preflights are answered before authentication; every other CDS request must carry
a valid client JWT unless ``CDSHOOKS_AUTH=off``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from .. import logs
from ..config import Settings
from ..store import Store, StoreUnavailable
from . import body as request_body
from .engine import Engine
from .errors import DeadlineExceeded, InvalidRequest, TooLarge, Unauthenticated
from .observability import feedback_stored
from .validation import validate
from .warmup import WARM_UP_ENVIRON

__all__ = ["bp", "State", "state", "floor_blueprint"]

bp = Blueprint("cds", __name__)

AUTH_OFF_HEADER = "X-CDS-Authentication"


@dataclass
class State:
    settings: Settings
    store: Store
    engine: Engine
    verifier: object | None  # auth.Verifier when authentication is required


def state() -> State:
    return current_app.extensions["cdshooks"]


def _deadline() -> float:
    """The instant by which this request must be answered (``CDSHOOKS_REQUEST_DEADLINE`` after it began)."""
    started = g.get("started") or time.monotonic()
    return started + state().settings.request_deadline


def _json_body() -> Any:
    """The body as JSON, within the size and nesting limits (413, 408, 400: see ``body.py``)."""
    return request_body.read_json(request, state().settings, _deadline())


def _audience() -> str:
    base = state().settings.public_url.rstrip("/") or request.host_url.rstrip("/")
    return base + request.path


_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@bp.before_app_request
def _request_id():
    g.started = time.monotonic()
    given = request.headers.get("X-Request-ID", "")
    logs.set_request_id(given if _REQUEST_ID.match(given) else logs.new_request_id())


@bp.teardown_app_request
def _clear_request_id(_exc):
    logs.set_request_id(None)


_PUBLIC_PATHS = {"/openapi.json"}  # answered without a client JWT (the probes and /metrics live elsewhere)


@bp.before_request
def _authenticate():
    if request.method == "OPTIONS":
        return _preflight()
    st = state()
    if st.verifier is None or request.path in _PUBLIC_PATHS or request.environ.get(WARM_UP_ENVIRON) is True:
        return None  # the worker's own warm-up calls (warmup.py) carry a key no client can set
    from ..trust.verifier import Unauthorized

    try:
        g.claims = st.verifier.check(request.headers.get("Authorization"), _audience())
    except Unauthorized:
        return Unauthenticated().response()
    return None


def _preflight() -> Response:
    resp = Response(status=204)
    resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    resp.headers["Access-Control-Max-Age"] = "86400"
    return resp


@bp.after_app_request
def _cors(resp: Response) -> Response:
    st = current_app.extensions.get("cdshooks")
    if st is None:
        return resp
    allowed = st.settings.cors_origins
    origin = request.headers.get("Origin")
    if "*" in allowed:
        resp.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and origin in allowed:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers.add("Vary", "Origin")
    if st.verifier is None:
        resp.headers[AUTH_OFF_HEADER] = "off"
    return resp


@bp.route("/cds-services", methods=["GET", "OPTIONS"])
@bp.route("/cds-services/", methods=["GET", "OPTIONS"])
def discovery():
    st = state()
    return jsonify({"services": [s.discovery() for s in st.engine.services.values()]})


def _release_after_sending(resp: Response, body: object) -> Response:
    """Free the parsed request body only once the response has been sent.

    Freeing a large prefetch (tens of thousands of objects) takes milliseconds; done after
    the WSGI server has written the answer, the clinician does not wait for it.
    """
    resp.call_on_close(lambda: body)
    return resp


@bp.route("/cds-services/<service_id>", methods=["POST", "OPTIONS"])
@bp.route("/cds-services/<service_id>/", methods=["POST", "OPTIONS"])
def call_service(service_id: str):
    st = state()
    st.engine.service(service_id)  # 404 before parsing the body
    body = _json_body()
    later: list = []  # the call's log lines and metrics: made once the answer is sent
    resp = jsonify(st.engine.answer(service_id, body, cutoff=_deadline(), defer=later.append))
    for report in later:
        resp.call_on_close(report)
    return _release_after_sending(resp, body)


@bp.route("/cds-services/<service_id>/feedback", methods=["POST", "OPTIONS"])
@bp.route("/cds-services/<service_id>/feedback/", methods=["POST", "OPTIONS"])
def post_feedback(service_id: str):
    st = state()
    service = st.engine.service(service_id)
    body = _json_body()
    items = body.get("feedback") if isinstance(body, dict) else None
    if isinstance(items, list) and len(items) > st.settings.max_feedback_items:
        raise TooLarge(f"At most {st.settings.max_feedback_items} feedback items are accepted in one request; "
                       f"this one has {len(items)}", expression=["feedback"])
    validate(body, "feedback")
    _issued_here(st.store, service.id, body["feedback"])
    if time.monotonic() > _deadline():
        raise DeadlineExceeded("The feedback could not be stored in time; nothing was stored")
    counts = st.store.store_feedback(service.id, body["feedback"], on_stored=feedback_stored)
    return jsonify(counts)


def _issued_here(store: Store, service_id: str, items: list[dict]) -> None:
    """Feedback on a card another of this server's services issued was sent to the wrong URL: refuse it whole."""
    from sqlalchemy.exc import SQLAlchemyError

    for i, item in enumerate(items):
        try:
            issued = store.issued(item["card"])
        except SQLAlchemyError:
            raise StoreUnavailable("feedback") from None  # 503, as storing it would be
        if issued is not None and issued["service_id"] != service_id:
            raise InvalidRequest(f"feedback[{i}].card was issued by the service {issued['service_id']!r}; "
                                 f"send its feedback to /cds-services/{issued['service_id']}/feedback",
                                 expression=[f"feedback[{i}].card"])



@bp.route("/openapi.json", methods=["GET"])
def openapi_document():
    from .openapi import document

    st = state()
    server = st.settings.public_url.rstrip("/") or request.host_url.rstrip("/")
    return jsonify(document([s.discovery() for s in st.engine.services.values()], server, _version(),
                            authenticated=st.verifier is not None))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cdshooks")
    except PackageNotFoundError:
        return "0+unknown"


def floor_blueprint() -> Blueprint:
    """The benchmark's floor: the same stack answering a route that only parses the JSON body.

    Registered outside production only: it answers without a token."""
    floor = Blueprint("floor", __name__)

    @floor.route("/_bench/parse", methods=["POST"])
    def parse_only():
        body = _json_body()
        return _release_after_sending(jsonify({"keys": len(body) if isinstance(body, dict) else 0}), body)

    return floor

