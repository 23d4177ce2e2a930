"""Logs: one JSON object per line, with event names and counts, never patient data or tokens.

Each line carries ``ts``, ``level``, ``logger``, ``event``, the event's fields and, while
a request is being handled, its ``request_id`` (``set_request_id``), so every line of
one call can be found together. Fields whose names denote credentials are written as
``"[redacted]"``: a token passed by mistake never reaches the log.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import sys
import time
from contextvars import ContextVar
from typing import Callable

import orjson

__all__ = ["configure", "event", "logger", "set_request_id", "new_request_id", "JsonFormatter",
           "keeping_request_id"]

logger = logging.getLogger("cdshooks")

_request_id: ContextVar[str | None] = ContextVar("cdshooks_request_id", default=None)

# field names that would hold a credential
_SECRET_FIELDS = frozenset({"token", "jwt", "authorization", "access_token", "refresh_token",
                            "id_token", "password", "secret", "client_secret", "private_key"})


def new_request_id() -> str:
    """A fresh request id (32 hex characters). It tags log lines and guards nothing, so it comes from
    the process's pseudo-random generator (reseeded in every forked worker), not from the OS."""
    return f"{random.getrandbits(128):032x}"


def set_request_id(request_id: str | None) -> None:
    """Tag the log lines written from now on in this context (thread) with ``request_id``;
    None stops tagging. The app sets it when a request starts and clears it when it ends."""
    _request_id.set(request_id)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (see the module docstring for its members)."""

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id is not None:
            body["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            body.update(fields)
            for key in fields:
                if _secret(key):
                    body[key] = "[redacted]"
        if record.exc_info and record.exc_info[0] is not None:
            body["error"] = record.exc_info[0].__name__
        try:
            return orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except (orjson.JSONEncodeError, TypeError):  # e.g. an integer past 64 bits: the standard module writes it
            return json.dumps(body, default=str)


@functools.lru_cache(maxsize=1024)
def _secret(name: object) -> bool:
    """Whether a field name denotes a credential (field names are the code's own: a bounded set)."""
    return str(name).lower() in _SECRET_FIELDS


def configure(level: str = "INFO") -> None:
    """Send the ``cdshooks`` logger's records to stderr as JSON lines, from ``level`` up. No line
    carries a thread or process name, so records do not look them up."""
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = True


def keeping_request_id(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` to be run later (after the answer is sent), its log lines tagged with the request id of
    now; it never raises (a failure is logged by its type)."""
    request_id = _request_id.get()

    def run() -> None:
        token = _request_id.set(request_id)
        try:
            fn()
        except Exception as exc:
            event("report.failed", logging.ERROR, error=type(exc).__name__)
        finally:
            _request_id.reset(token)

    return run


def event(name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log one event with structured fields (ids, counts, timings; never patient data)."""
    if logger.isEnabledFor(level):
        # built and handled as Logger.log would, less the search of the stack for the caller's
        # file and line, which no line of this log carries
        logger.handle(logger.makeRecord(logger.name, level, "(event)", 0, name, (), None, extra={"fields": fields}))
