"""Body: a request body read within the service's limits, then parsed as JSON.

    read_json(request, settings, deadline)   the parsed body, or a ServiceError:
        413  more than ``max_body_bytes``, whether announced by ``Content-Length`` or sent chunked
        408  the body did not arrive before the request's deadline
        400  empty, not JSON, or arrays and objects nested deeper than ``max_json_depth``
    nesting_exceeds(raw, limit)               whether JSON text nests deeper than ``limit``

A body nested deeper than ``max_json_depth`` is refused before any recursive code (schema
validation, the FHIR models) meets it. The parser itself tells: orjson reads nesting up to a fixed
depth (1,024 in the orjson this project pins; measured at import, ``_PARSER_DEPTH``) and refuses anything
deeper, so the body is parsed inside ``_PARSER_DEPTH - max_json_depth`` arrays of one element
each, which parse only when the body nests at most ``max_json_depth`` deep, and is taken back out
of them. Each of those arrays must hold exactly one element: a text that is not one JSON value
(``1],[2``) cannot pass for one inside them. What that parse refuses (text that is not JSON, or
that orjson alone refuses, such as ``NaN``) is judged the exact way on the bytes
(``nesting_exceeds``: escapes and the contents of strings removed, the brackets' depth measured
with C-speed bytes operations, about 1 ms per MB), then parsed as before.

A body whose length is announced is read with one read of that length (the worker has it in
memory already); a chunked one in 64 KiB pieces, stopping at the limit.
"""

from __future__ import annotations

import json
import time
from array import array
from itertools import accumulate
from typing import Any

import orjson
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from . import jsoncodec
from .errors import InvalidRequest, RequestTimeout, TooLarge

__all__ = ["read_json", "read_bytes", "parse_json", "nesting_exceeds"]

_CHUNK = 64 * 1024
# every byte but the brackets and the quote, deleted by bytes.translate
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_FOLD = bytes.maketrans(b"{}", b"[]")
_SIGN = bytes.maketrans(b"[]", b"\x01\xff")  # +1 / -1 as signed bytes
_MANY_ESCAPES = 4096  # past this many backslashes the escapes are removed with one bytes pass


def read_bytes(request, max_bytes: int, deadline: float | None = None) -> bytes:
    """The raw body, at most ``max_bytes`` of it (413 past it, chunked bodies included)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise TooLarge(f"The request body is larger than {max_bytes} bytes")
    try:
        if length is not None:
            # The announced length, read from the server's input itself (which never gives more than
            # that): one read, then the rest of a short read; a body that ends before it is refused.
            source = request.environ["wsgi.input"]
            data = source.read(length)
            if len(data) == length:
                return data
            out = bytearray(data)
            while len(out) < length:
                chunk = source.read(min(_CHUNK, length - len(out)))
                if not chunk:
                    raise ClientDisconnected()
                out += chunk
                if deadline is not None and time.monotonic() > deadline:
                    raise RequestTimeout("The request body did not arrive in time")
            return bytes(out)
        stream = request.stream
        out = bytearray()
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            out += chunk
            if len(out) > max_bytes:
                raise TooLarge(f"The request body is larger than {max_bytes} bytes")
            if deadline is not None and time.monotonic() > deadline:
                raise RequestTimeout("The request body did not arrive in time")
    except RequestEntityTooLarge:
        raise TooLarge(f"The request body is larger than {max_bytes} bytes") from None
    except (ClientDisconnected, OSError, ValueError):  # the client went away, or the server's input broke off
        raise InvalidRequest("The request body ended before it was complete", expression=["(body)"]) from None
    return bytes(out)


def _without_escapes(raw: bytes) -> bytes:
    """``raw`` less every backslash escape (the backslash and the byte after it)."""
    count = raw.count(b"\\")
    if count > _MANY_ESCAPES:
        # pairs of backslashes first, then escaped quotes; other escapes hide no structure
        return raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    parts, start = [], 0
    while True:
        i = raw.find(b"\\", start)
        if i < 0:
            parts.append(raw[start:])
            return b"".join(parts)
        parts.append(raw[start:i])
        start = i + 2


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the arrays and objects of JSON text ``raw`` nest deeper than ``limit``.

    Exact for valid JSON; for text that is not JSON the answer does not matter (the parser
    refuses it). Linear in ``len(raw)``, with bytes operations only.
    """
    if len(raw) < 2 * (limit + 1):  # fewer bytes than limit + 1 nested pairs need (counting them costs more)
        return False
    if raw[:4].count(0):  # UTF-16 or UTF-32 JSON: measured in UTF-8
        try:
            raw = raw.decode(json.detect_encoding(raw)).encode("utf-8")
        except (UnicodeError, LookupError):
            return False
    if b"\\" in raw:
        raw = _without_escapes(raw)
    # Only brackets and quotes remain. An empty string ("") hides nothing, wherever the pair
    # is cut; quotes still left enclose strings that contain brackets: drop their contents.
    s = raw.translate(None, _NOT_STRUCTURE)
    if len(s) <= limit:
        return False
    s = s.replace(b'""', b"")
    if b'"' in s:
        s = b"".join(s.split(b'"')[::2])
    if len(s) <= limit:
        return False
    s = s.translate(_FOLD)
    if b"[" * (limit + 1) in s:
        return True
    if len(s) < 1 << 18:
        # each pass removes the innermost level: as many passes as the depth
        depth = 0
        while s:
            shorter = s.replace(b"[]", b"")
            if len(shorter) == len(s):
                return False  # unbalanced: not JSON
            s, depth = shorter, depth + 1
            if depth > limit:
                return True
        return False
    return max(accumulate(array("b", s.translate(_SIGN)))) > limit


def _deepest_read() -> int:
    """The deepest nesting of arrays orjson reads (it refuses one level more), or 0 when it reads
    past 4,096 levels (then it sets no limit to lean on)."""
    def reads(depth: int) -> bool:
        try:
            orjson.loads(b"[" * depth + b"]" * depth)
            return True
        except orjson.JSONDecodeError:
            return False

    if reads(4097):
        return 0
    low, high = 1, 4097  # reads(low), not reads(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if reads(middle) else (low, middle)
    return low


_PARSER_DEPTH = _deepest_read()
_OPEN, _CLOSE = b"[" * _PARSER_DEPTH, b"]" * _PARSER_DEPTH
_UNSURE = object()


def _parsed_within(raw: bytes, max_depth: int) -> Any:
    """The JSON value of ``raw`` when it nests at most ``max_depth`` deep, parsed inside as many
    arrays as leave orjson's own limit at ``max_depth`` (see the module doc); ``_UNSURE`` when that
    parse cannot tell (the exact way judges then)."""
    pad = _PARSER_DEPTH - max_depth
    if pad <= 0 or raw.__class__ is not bytes:
        return _UNSURE
    try:
        value = orjson.loads(b"".join((_OPEN[:pad], raw, _CLOSE[:pad])))
    except orjson.JSONDecodeError:
        return _UNSURE  # not JSON, too deep, or JSON that only the standard module reads
    for _ in range(pad):
        if value.__class__ is not list or len(value) != 1:
            return _UNSURE  # the text closed arrays it did not open: not one JSON value
        value = value[0]
    return value


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The JSON value of ``raw``; 400 when it is empty, not JSON or nested too deeply."""
    if not raw:
        raise InvalidRequest("The request body is empty; a JSON object is required", expression=["(body)"])
    value = _parsed_within(raw, max_depth)
    if value is not _UNSURE:
        return value
    if nesting_exceeds(raw, max_depth):
        raise InvalidRequest(f"The request body nests arrays and objects more than {max_depth} levels deep",
                             expression=["(body)"])
    try:
        return jsoncodec.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("The request body is not valid JSON", expression=["(body)"]) from None


def read_json(request, settings, deadline: float | None = None) -> Any:
    """The request's body parsed as JSON, within ``settings``' size and nesting limits."""
    return parse_json(read_bytes(request, settings.max_body_bytes, deadline), settings.max_json_depth)
