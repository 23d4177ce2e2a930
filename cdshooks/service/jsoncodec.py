"""JSON codec: request bodies read and responses written with orjson.

orjson was chosen by measurement (``bench/run.py``, README "Performance"): it parses a hook
request two to three times faster than the standard ``json`` module and writes a response in
microseconds. Reading stays as tolerant as the standard module: a body orjson refuses but
``json`` reads (``NaN`` or ``Infinity``, lone surrogate escapes) is read by ``json``, so no
request that was accepted before is refused now (an integer past 64 bits, which no FHIR element
holds, is read as a float). Writing is strict: orjson writes
only valid JSON (a NaN becomes ``null``); a value it cannot write falls back to ``json``.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider

__all__ = ["loads", "dumps", "JSONCodecProvider"]

_OPTIONS = orjson.OPT_NON_STR_KEYS


def loads(raw: bytes | bytearray | str) -> Any:
    """The JSON value of ``raw``; raises ``ValueError`` (or ``UnicodeDecodeError``) when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc).lower()
        if "recursion" in reason or "depth limit" in reason:  # orjson's words before and since 3.10
            raise ValueError("JSON nested too deeply") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__html__"):
        return str(value.__html__())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_default(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return _default(value)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON for ``value``, keys in insertion order."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        # e.g. an integer past 64 bits: the standard module writes it
        return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode()


class JSONCodecProvider(JSONProvider):
    """Flask's ``jsonify`` / ``request.get_json`` through this codec."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(dumps(obj) + b"\n", mimetype=self.mimetype)
