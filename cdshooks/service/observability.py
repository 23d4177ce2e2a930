"""Observability: liveness and readiness probes, Prometheus ``/metrics``, and the timing of every request.

    GET /healthz, /healthz/live   liveness: the process answers (never looks at the database)
    GET /healthz/ready            readiness: 200 when the database answers, else 503 (OperationOutcome)
    GET /metrics                  Prometheus text format, summed over every gunicorn worker

None of them needs a client JWT. Each request's duration is observed in
``cdshooks_http_request_duration_seconds`` by endpoint, CDS service and status.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from .. import metrics
from ..cards.card import OVERRIDE_REASONS
from .errors import operation_outcome
from .warmup import WARM_UP_ENVIRON

__all__ = ["bp", "feedback_stored"]

bp = Blueprint("observability", __name__)

_OVERRIDE_CODES = frozenset(r["code"] for r in OVERRIDE_REASONS)
_ENDPOINTS = {"cds.discovery": "discovery", "cds.call_service": "hook", "cds.post_feedback": "feedback",
              "observability.live": "health", "observability.ready": "health", "observability.scrape": "metrics",
              "floor.parse_only": "bench"}


def _state():
    return current_app.extensions.get("cdshooks")


@bp.before_app_request
def _started() -> None:
    g.observed_from = time.perf_counter()


@bp.after_app_request
def _observed(resp: Response) -> Response:
    started = g.pop("observed_from", None)
    if started is not None and request.environ.get(WARM_UP_ENVIRON) is not True:  # a worker's warm-up: no traffic
        endpoint, service = _labels()
        metrics.REQUEST_SECONDS.labels(endpoint, service, str(resp.status_code)).observe(
            time.perf_counter() - started)
    return resp


def _labels() -> tuple[str, str]:
    """(endpoint kind, known service id or ""): label values from a fixed set, never from the URL as sent."""
    name = request.endpoint or ""
    endpoint = _ENDPOINTS.get(name) or (name.split(".", 1)[0] if "." in name else "unmatched")
    service = (request.view_args or {}).get("service_id") or ""
    st = _state()
    if service and (st is None or service not in st.engine.services):
        service = "unknown"
    return endpoint, service


@bp.route("/healthz", methods=["GET"])
@bp.route("/healthz/live", methods=["GET"])
def live():
    st = _state()
    return jsonify({"status": "ok", "authentication": "required" if st.verifier else "off"})


@bp.route("/healthz/ready", methods=["GET"])
def ready():
    st = _state()
    if not st.store.ping():
        resp = jsonify(operation_outcome("transient", "The database does not answer"))
        resp.status_code = 503
        return resp
    return jsonify({"status": "ready", "database": "ok"})


@bp.route("/metrics", methods=["GET"])
def scrape():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def feedback_stored(rule_id: str | None, item: dict) -> None:
    """Count one stored feedback item by rule and outcome, and an override's reason (a known code, else
    ``other``; none given: ``none``)."""
    rule = rule_id or "(unknown card)"
    metrics.FEEDBACK.labels(rule, item.get("outcome", "")).inc()
    if item.get("outcome") == "overridden":
        code = ((item.get("overrideReason") or {}).get("reason") or {}).get("code")
        metrics.OVERRIDE_REASONS.labels(rule, code if code in _OVERRIDE_CODES else ("other" if code else "none")).inc()
