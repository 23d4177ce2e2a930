"""Errors: every non-2xx answer is a FHIR OperationOutcome.

Each ``ServiceError`` subclass carries its HTTP status and FHIR issue code; ``register()``
installs one handler for them, one for werkzeug's HTTP errors, and a last one that turns
anything unexpected into a 500 that reveals no internals.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from .. import logs
from ..store import StoreUnavailable

__all__ = ["ServiceError", "InvalidRequest", "UnknownService", "DataUnobtainable", "Unauthenticated", "TooLarge",
           "RequestTimeout", "DeadlineExceeded", "operation_outcome", "register"]


def operation_outcome(code: str, diagnostics: str, expression: list[str] | None = None,
                      severity: str = "error") -> dict:
    issue: dict = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class ServiceError(Exception):
    status = 500
    code = "exception"

    def __init__(self, diagnostics: str, expression: list[str] | None = None):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression

    def response(self) -> Response:
        resp = jsonify(operation_outcome(self.code, self.diagnostics, self.expression))
        resp.status_code = self.status
        return resp


class InvalidRequest(ServiceError):
    status = 400
    code = "invalid"


class UnknownService(ServiceError):
    status = 404
    code = "not-found"


class DataUnobtainable(ServiceError):
    """412: data the rules need is neither in prefetch nor obtainable from fhirServer."""

    status = 412
    code = "processing"


class TooLarge(ServiceError):
    """413: a body, or a list in it (feedback items, draft orders), larger than the service accepts."""

    status = 413
    code = "too-costly"


class RequestTimeout(ServiceError):
    """408: the request body did not arrive before the request's deadline."""

    status = 408
    code = "timeout"


class DeadlineExceeded(ServiceError):
    """503: the request could not be answered before its deadline (``CDSHOOKS_REQUEST_DEADLINE``)."""

    status = 503
    code = "timeout"


class Unauthenticated(ServiceError):
    status = 401
    code = "login"

    def __init__(self) -> None:
        super().__init__("Authentication required")

    def response(self) -> Response:
        resp = super().response()
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp


_HTTP_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 408: "timeout", 413: "too-costly",
               415: "not-supported", 431: "too-costly"}


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        return exc.response()

    @app.errorhandler(StoreUnavailable)
    def _store_unavailable(exc: StoreUnavailable):
        # the replay check or a feedback write could not run: the client may retry later
        resp = jsonify(operation_outcome("transient", "The service's database is unavailable; try again later"))
        resp.status_code = 503
        resp.headers["Retry-After"] = "5"
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = {
            404: "No such endpoint",
            405: "Method not allowed on this endpoint",
            413: "Request body too large",
        }.get(status, exc.name)
        resp = jsonify(operation_outcome(_HTTP_CODES.get(status, "exception"), message))
        resp.status_code = status
        if status == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if app.config.get("PROPAGATE_UNEXPECTED"):
            raise exc
        logs.event("request.failed", logging.ERROR, error=type(exc).__name__)
        resp = jsonify(operation_outcome("exception", "The service could not process the request"))
        resp.status_code = 500
        return resp
