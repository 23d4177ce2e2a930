"""gunicorn's own log lines (start-up, workers, errors) as the service's JSON lines.

``JsonLogger`` is gunicorn's ``logger_class``: its error log goes through the same
``JsonFormatter`` as the service's events, as ``{"event": "server.log", "message": ...}``.
gunicorn puts request targets, raw request bytes and exception texts into some lines (at
DEBUG every request line, e.g. ``GET /fhir/Patient/<id>``), so the message is rebuilt from
the format string with only plain arguments (numbers, names, listening addresses) kept:
any path is written ``[path]`` and anything quoted ``[redacted]``. The access log stays off.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger

from ..logs import JsonFormatter

__all__ = ["JsonLogger", "GunicornFormatter", "scrub"]

_PLAIN = re.compile(r"[\w.:\-\[\]]{0,200}|(?:https?|tcp|unix)://[\w.:\-\[\]]{1,200}/?")
_PATH = re.compile(r"(?<![\w:/.\]])/[^\s'\"]*")
_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"|b?'.*|b?\".*")


def scrub(text: str) -> str:
    """``text`` with every path (``/...`` not after a host) and anything quoted left out."""
    return _PATH.sub("[path]", _QUOTED.sub("[redacted]", text))


def _argument(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    return text if _PLAIN.fullmatch(text) else "[redacted]"


class GunicornFormatter(JsonFormatter):
    """``JsonFormatter`` for gunicorn's records: fixed event name, message scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple):
            try:
                message = str(record.msg) % tuple(_argument(a) for a in args)
            except (TypeError, ValueError):
                message = str(record.msg)
        else:
            message = str(record.msg)
        clean = logging.makeLogRecord(record.__dict__)
        clean.msg, clean.args = "server.log", None
        clean.fields = {"message": scrub(message)}
        return super().format(clean)


class JsonLogger(Logger):
    """gunicorn's logger with every error-log handler writing JSON lines."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(GunicornFormatter())
        self.error_log.propagate = False
