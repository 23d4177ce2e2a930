"""The gunicorn worker: threads for the app, but only for requests that have fully arrived.

gunicorn's threaded worker hands a connection to a thread as soon as it is readable, and the
thread then blocks while a slow client sends the rest of its headers or body: a few clients
sending half a body hold every thread. ``BufferingWorker`` keeps such connections in its event
loop instead. It reads what arrives without blocking, and only when the request is whole
(headers, then ``Content-Length`` bytes or the last chunk) does a thread parse it, from memory.
A client gets ``CDSHOOKS_CLIENT_TIMEOUT`` seconds to send a request; past that it is answered
408 and closed, without a thread ever waiting for it.

A request is handed over before it is whole only when it will be refused anyway: a declared
``Content-Length`` over ``CDSHOOKS_MAX_BODY_BYTES`` (the app answers 413 without reading), a
chunked body well past it (the app stops reading at the limit and answers 413), headers past
gunicorn's own limits (which answer), or a framing the scanner cannot follow (gunicorn's parser
answers 400). The thread then sees the end of the stream where the buffered bytes end, so it
never waits for the client, and the connection closes after the answer. HTTP/1.1 only; with
TLS in gunicorn it behaves as the plain threaded worker (TLS ends at a proxy in front).
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

from .. import logs
from ..config import Settings

__all__ = ["BufferingWorker", "RequestBuffer", "refusal"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# a chunked body goes to the app once this much past the limit is here: the app reads in pieces
# (64 KiB) and stops past the limit, so it meets the 413 before the end of what was received
_CHUNKED_MARGIN = 1024 * 1024
_TIMEOUT_BODY = json.dumps({"resourceType": "OperationOutcome", "issue": [{
    "severity": "error", "code": "timeout",
    "diagnostics": "the request was not received in time"}]}).encode()
_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)

# What gunicorn's HTTP parser refuses before the app sees a request, answered as the app answers
# (an OperationOutcome, never the client's bytes echoed back) rather than with gunicorn's HTML
# page. An unsupported transfer coding is the client's to fix: 400, not gunicorn's 501.
_PARSER_REFUSALS: tuple[tuple[str, int, str, str, str], ...] = (
    ("LimitRequestHeaders", 431, "Request Header Fields Too Large", "too-costly",
     "The request's header fields are too many or too large"),
    ("LimitRequestLine", 414, "URI Too Long", "too-costly", "The request line is too long"),
    ("ExpectationFailed", 417, "Expectation Failed", "not-supported", "The request's Expect header cannot be met"),
    ("ForbiddenProxyRequest", 403, "Forbidden", "forbidden", "Proxy requests are not accepted from this address"),
    ("UnsupportedTransferCoding", 400, "Bad Request", "not-supported",
     "The request's Transfer-Encoding is not supported (chunked only)"),
)
_CLIENT_ERRORS = tuple(getattr(http_errors, name) for name in (
    "InvalidRequestLine", "InvalidRequestMethod", "InvalidHTTPVersion", "InvalidHeader", "InvalidHeaderName",
    "LimitRequestLine", "LimitRequestHeaders", "InvalidProxyLine", "ForbiddenProxyRequest", "InvalidSchemeHeaders",
    "UnsupportedTransferCoding", "ObsoleteFolding", "ExpectationFailed", "InvalidH2CPreface",
    "InvalidChunkSize", "ChunkMissingTerminator", "InvalidChunkExtension") if hasattr(http_errors, name))


def refusal(exc: BaseException) -> bytes | None:
    """The whole HTTP answer to a request gunicorn's parser refused (``exc``), or None when
    ``exc`` is not a fault of the client's request."""
    if not isinstance(exc, _CLIENT_ERRORS):
        return None
    status, reason, code, message = 400, "Bad Request", "invalid", "The request is not valid HTTP/1.1"
    for name, *answer in _PARSER_REFUSALS:
        if isinstance(exc, getattr(http_errors, name, ())):
            status, reason, code, message = answer  # type: ignore[assignment]
            break
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": code, "diagnostics": message}]}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class RequestBuffer:
    """The bytes of one HTTP/1.1 request as they arrive, and whether they make a whole request."""

    def __init__(self, max_body: int, header_cap: int = 1024 * 1024):
        self.data = bytearray()
        self.max_body = max_body
        self.header_cap = header_cap
        self._decoded = 0                   # chunked: body bytes seen so far, framing left out
        self._header_end = -1
        self._length: int | None = None     # body length when framed by Content-Length
        self._chunked = False
        self._scan = 0                      # chunked: where the next chunk-size line starts
        self.hand_over = False              # incomplete, but nothing more should be waited for
        self.expects_continue = False

    def feed(self, data: bytes) -> bool:
        """Add bytes; True when the request is whole (or must go to the parser as it is)."""
        self.data += data
        if self._header_end < 0:
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                if len(self.data) > self.header_cap:
                    self.hand_over = True
                return self.hand_over
            self._header_end = end + 4
            self._framing(bytes(self.data[:end]))
            self._scan = self._header_end
        if self.hand_over:
            return True
        body = len(self.data) - self._header_end
        if self._chunked:
            return self._chunks_done()
        return body >= (self._length or 0)

    def _framing(self, head: bytes) -> None:
        lengths, codings = [], []
        for line in head.split(b"\r\n")[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            key = name.strip().lower()
            if key == b"content-length":
                lengths.append(value.strip())
            elif key == b"transfer-encoding":
                codings.append(value.strip().lower())
            elif key == b"expect" and value.strip().lower() == b"100-continue":
                self.expects_continue = True
        if codings:
            self._chunked = codings[-1].split(b",")[-1].strip() == b"chunked"
            self.hand_over = not self._chunked or bool(lengths)  # the parser refuses these
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                self.hand_over = True
            else:
                self._length = int(lengths[0])
                self.hand_over = self._length > self.max_body

    def _chunks_done(self) -> bool:
        data = self.data
        while True:
            line_end = data.find(b"\r\n", self._scan)
            if line_end < 0:
                return False
            size_text = bytes(data[self._scan:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self.hand_over = True  # the parser answers 400
                return True
            if size == 0:
                if data[line_end + 2:line_end + 4] == b"\r\n":
                    return True
                return data.find(b"\r\n\r\n", line_end) >= 0
            present = min(size, len(data) - line_end - 2)
            if self._decoded + present > self.max_body + _CHUNKED_MARGIN:
                self.hand_over = True  # the app reads past its limit from what is here, and answers 413
                return True
            next_line = line_end + 2 + size + 2
            if len(data) < next_line:
                return False
            self._decoded += size
            self._scan = next_line


class _Buffered:
    """The client socket as the request parser sees it: ``recv`` returns the bytes read ahead,
    then end-of-stream, never waiting for the client. After a request handed over unfinished,
    the connection closes once it is answered. Everything else is the real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.raw = sock
        self._data = bytearray()
        self.continue_sent = False
        self.unfinished = False

    def feed(self, data: bytes | bytearray, unfinished: bool) -> None:
        self._data += data
        self.unfinished = unfinished

    def recv(self, size: int, flags: int = 0) -> bytes:
        out = bytes(self._data[:size])
        del self._data[:size]
        return out

    def send(self, data: bytes, flags: int = 0) -> int:
        if data == _CONTINUE and self.continue_sent:
            self.continue_sent = False
            return len(data)  # the worker already told the client to go on
        return self.raw.send(data, flags)

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


class BufferingWorker(ThreadWorker):
    """gunicorn's threaded worker, with requests read whole in the event loop first."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading: deque[TConn] = deque()  # ordered by deadline
        try:
            settings = Settings.from_env()
            self.max_body, self.client_timeout = settings.max_body_bytes, settings.client_timeout
        except ValueError:  # the app reports the setting at start-up
            self.max_body, self.client_timeout = Settings.max_body_bytes, Settings.client_timeout

    def rehearse(self, raw: bytes, environ: dict | None = None, timeout: float = 30) -> bytes:
        """Answer one request (``raw``: its HTTP/1.1 bytes) through this worker's own path, before
        it accepts connections, and return the answer's bytes (b"" when there is none). Never raises.

        The request is gathered in a ``RequestBuffer`` by this thread (the event loop's) in 64 KiB
        pieces, as a client's is, then parsed and answered on a request thread by gunicorn's
        parser, the app (``environ`` added to its WSGI environ) and gunicorn's response writer,
        into one end of a socket pair. A forked worker otherwise runs that path for the first
        time on its first call, gunicorn's parser and writer included (they never run in the
        master), and writes for the first time to the allocator's heap it shares with the master,
        each page then copied: measured on a typical 119 KB call, the event loop's thread took
        about 110 page faults and 4 ms of CPU on a worker's first call, 2-25 faults and 2-3 ms
        after this rehearsal (1-2 ms on later calls)."""
        ours, theirs = socket.socketpair()
        app: Callable = self.wsgi  # type: ignore[has-type]
        out = bytearray()

        def with_environ(env, start_response):
            env.update(environ or {})
            return app(env, start_response)

        try:
            conn = TConn(self.cfg, ours, ("127.0.0.1", 0), ("127.0.0.1", 0))
            request = RequestBuffer(self.max_body, self._header_cap())
            for start in range(0, len(raw), 65536):
                request.feed(raw[start:start + 65536])
            conn.sock = _Buffered(conn.sock)
            conn.sock.feed(request.data, unfinished=True)  # closes after its answer
            conn.data_ready = True
            self.wsgi = with_environ
            answered = self.tpool.submit(self.handle, conn)
            theirs.settimeout(0.05)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data = theirs.recv(65536)
                except TimeoutError:
                    if answered.done():
                        break
                    continue
                if not data:
                    break
                out += data
            answered.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - a worker that could not rehearse still serves
            pass
        finally:
            self.wsgi = app
            ours.close()
            theirs.close()
        return bytes(out)

    # -- new connections and kept-alive ones both start by reading a request -------------
    def accept(self, listener) -> None:
        try:
            client, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, addr, listener.getsockname())  # non-blocking
        if self.cfg.is_ssl:
            conn.sock.setblocking(True)
            self.enqueue_req(conn)
            return
        self._read(conn)

    def on_client_socket_readable(self, conn, client) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        if self.cfg.is_ssl or conn.is_http2:
            self.enqueue_req(conn)
            return
        self._read(conn)
        self._on_readable(conn, conn.sock)

    def handle_error(self, req, client, addr, exc) -> None:
        """A request gunicorn's parser refused gets an OperationOutcome (``refusal``) and one log
        line naming the fault's kind only; anything else is gunicorn's to answer (a 500)."""
        answer = refusal(exc)
        if answer is None:
            super().handle_error(req, client, addr, exc)
            return
        logs.event("http.refused", status=int(answer.split(b" ", 2)[1]), error=type(exc).__name__)
        try:
            util.write_nonblock(client, answer)
        except OSError:
            pass

    def _header_cap(self) -> int:
        """Past this many bytes without the end of the headers, gunicorn's own limits answer."""
        line, fields, size = (self.cfg.limit_request_line, self.cfg.limit_request_fields,
                              self.cfg.limit_request_field_size)
        if not (line and fields and size):
            return 4 * 1024 * 1024
        return line + 2 + fields * (size + 2) + 4

    def _read(self, conn) -> None:
        conn.request = RequestBuffer(self.max_body, self._header_cap())
        conn.timeout = time.monotonic() + self.client_timeout
        conn.sock.setblocking(False)
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, client) -> None:
        raw = conn.sock.raw if isinstance(conn.sock, _Buffered) else conn.sock
        whole = False
        try:
            while not whole:
                data = raw.recv(65536)
                if not data:
                    self._drop(conn)
                    return
                whole = conn.request.feed(data)
                if len(data) < 65536:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return
        request = conn.request
        if not whole:
            if request.expects_continue and request._header_end >= 0 and not getattr(conn, "continued", False):
                try:
                    raw.send(_CONTINUE)
                    conn.continued = True
                except OSError:
                    pass
            return
        self.poller.unregister(conn.sock)
        self.reading.remove(conn)
        if not isinstance(conn.sock, _Buffered):
            conn.sock = _Buffered(conn.sock)
        conn.sock.feed(request.data, unfinished=request.hand_over)
        conn.sock.continue_sent = getattr(conn, "continued", False)
        conn.continued = False
        conn.request = None
        conn.data_ready = True
        conn.sock.setblocking(True)
        self.enqueue_req(conn)

    def _keepalive_after(self, conn, keepalive):
        """A connection whose request was handed over unfinished closes after its answer: the
        rest of that request may still be on its way."""
        if isinstance(conn.sock, _Buffered) and conn.sock.unfinished:
            return False
        return super()._keepalive_after(conn, keepalive)

    def _drop(self, conn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if conn in self.reading:
            self.reading.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also answer 408 to clients that have not sent a whole request in time."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].timeout <= now:
            conn = self.reading[0]
            raw = conn.sock.raw if isinstance(conn.sock, _Buffered) else conn.sock
            started = conn.request is not None and len(conn.request.data) > 0
            if started:
                try:
                    raw.send(_TIMEOUT)
                except OSError:
                    pass
            self._drop(conn)
            if started:
                self.log.info("Client did not send its request in %s s", self.client_timeout)
