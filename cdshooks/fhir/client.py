"""FHIR client: the guarded outbound path to a caller's ``fhirServer``.

Where requests may go:

* outside production the service's own ``/fhir``, on the host and port it serves, is allowed
  too (``own_fhir``); ``CDSHOOKS_FHIR_ROUTES`` says where a listed server answers from inside
  the service's network (``routed``: the ``fhirServer`` and its ``next`` links);
* every URL (``fhirServer``, each search, each ``next`` link) is first put in RFC 3986 normal
  form (``normalize_url``) and that form is both what is compared and what is requested;
* a ``fhirServer`` with user information, a query or a fragment is refused
  (``base_url_problem``); it must be at or below a base in ``CDSHOOKS_FHIR_SERVERS``; plain
  ``http`` only on loopback;
* every request, and so the bearer token, stays at or below the normalised ``fhirServer``
  (``inside``); a ``next`` link anywhere else ends the search;
* redirects are not followed, responses are capped in size.

How long they may take: a request ends at the call's deadline or after the fetch timeout,
whichever comes first, wherever it is (connecting, waiting for headers, reading a body that
drips): a watchdog shuts its socket at that instant, and when a call gives up (one key failed,
or the deadline passed) every other request of that call is shut at once. So no thread goes
on reading for a call that has already answered. Each FHIR server (scheme, host, port) has its
own small pool of fetch threads (``CDSHOOKS_FETCH_PER_SERVER``): a slow or hostile server can
only queue work behind itself, never take the threads another server's calls need.

Any failure is a ``FetchError``: *data not obtainable*, never *no data*.
"""

from __future__ import annotations

import heapq
import http.client
import ipaddress
import itertools
import json
import re
import socket
import ssl
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from urllib.parse import urlsplit

from .. import logs, metrics

__all__ = ["FhirClient", "FetchError", "UnsafeUrl", "allowed_server", "base_url_problem", "inside", "normalize_base",
           "normalize_url", "own_fhir", "routed"]


class FetchError(Exception):
    def __init__(self, reason: str, keys: list[str] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.keys = keys or []


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeUrl(ValueError):
    """A URL the service will not send a request (or a token) to; the message says why."""


def _unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            cut = path.find("/", 1)
            cut = len(path) if cut < 0 else cut
            out.append(path[:cut])
            path = path[cut:]
    return "".join(out)


def normalize_url(url: str) -> str:
    """``url`` in RFC 3986 normal form (section 6.2.2 and 6.2.3): scheme and host in lower case,
    no default port, percent-encoded unreserved characters (such as ``%2E``) decoded, other
    percent-encodings in upper case, dot segments removed; the fragment is dropped.

    This is the form that is compared with the allowlist and the form that is requested, so the
    two cannot differ. Raises ``UnsafeUrl`` for what has no safe normal form: another scheme, no
    host, user information, an encoded slash or backslash, a backslash, whitespace or a control
    character, or a segment that servers may read as a dot segment (``..;x``).
    """
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url) or "\\" in url:
        raise UnsafeUrl("contains whitespace, a control character or a backslash")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UnsafeUrl("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeUrl("must be an http or https URL")
    if not host or "%" in parts.netloc:
        raise UnsafeUrl("has no valid host")
    if "@" in parts.netloc:
        raise UnsafeUrl("may not carry user information")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _PERCENT.sub(_unreserved, parts.path)
    if "%2F" in path or "%5C" in path:
        raise UnsafeUrl("has an encoded slash or backslash in its path")
    path = _remove_dot_segments(path) or "/"
    if any(segment.split(";", 1)[0] in (".", "..") for segment in path.split("/")):
        raise UnsafeUrl("has a path segment that reads as a dot segment")
    query = _PERCENT.sub(_unreserved, parts.query)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a ``fhirServer`` base URL (a phrase), or None when it can."""
    try:
        normalize_url(url)
    except UnsafeUrl as exc:
        return str(exc)
    parts = urlsplit(url)
    if parts.query or url.endswith("?"):
        return "may not have a query string"
    if parts.fragment or "#" in url:
        return "may not have a fragment"
    return None


def normalize_base(url: str) -> str:
    """A ``fhirServer`` or allowlist base URL in normal form, without a trailing slash;
    ``UnsafeUrl`` when it is no usable base (see ``base_url_problem``)."""
    problem = base_url_problem(url)
    if problem:
        raise UnsafeUrl(problem)
    return normalize_url(url).rstrip("/")


def inside(url: str, base: str) -> bool:
    """Whether the normal-form ``url`` is ``base`` or below it (whole path segments only)."""
    path = url.split("?", 1)[0]
    return path.rstrip("/") == base or path.startswith(base + "/")


def _origin(base: str) -> str:
    """scheme://host[:port] of an allowed base URL: a metric label bounded by the allowlist."""
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_server(url: str, allowlist: tuple[str, ...], allow_http: bool = False) -> bool:
    """Whether the service may call ``url``: in normal form at or below a listed base, and https
    unless on loopback (or ``allow_http``)."""
    try:
        base = normalize_base(url)
    except UnsafeUrl:
        return False
    parts = urlsplit(base)
    if parts.scheme == "http" and not (allow_http or _is_loopback(parts.hostname or "")):
        return False
    for entry in allowlist:
        try:
            allowed = normalize_base(entry)
        except UnsafeUrl:
            continue
        if inside(base, allowed):
            return True
    return False


def own_fhir(url: str, host: str, port: int) -> bool:
    """Whether ``url`` is this service's own development ``/fhir`` endpoint as served on ``host:port``.

    Any loopback name (``127.0.0.1``, ``localhost``, ``[::1]``) reaches it, and so does the bound
    address itself when it is a specific one; the port must be the one served.
    """
    try:
        parts = urlsplit(normalize_base(url))
        served = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except (UnsafeUrl, ValueError):
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    name = parts.hostname.lower()
    here = _is_loopback(name) or (host not in ("", "0.0.0.0", "::") and name == host.strip("[]").lower())
    return here and served == port and parts.path == "/fhir"


def routed(url: str, routes: tuple[str, ...]) -> str:
    """Where the service reaches ``url``: a ``public=internal`` route rewrites its base (CDSHOOKS_FHIR_ROUTES).

    The allowlist is checked against the URL the client sent; the route only says where that
    server answers from inside the service's network (a compose network, a NAT). A URL no route
    names comes back as it is.
    """
    if not routes:
        return url
    try:
        target = normalize_url(url)
    except UnsafeUrl:
        return url
    for route in routes:
        public, _, internal = route.partition("=")
        try:
            prefix, inner = normalize_base(public), normalize_base(internal)
        except UnsafeUrl:
            continue
        if inside(target, prefix):
            return inner + target[len(prefix):]
    return url


class _Watchdog:
    """One daemon thread that shuts sockets down at their deadlines (a blocked read then returns)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: set[int] = set()
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, at: float) -> int:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fhir-watchdog", daemon=True)
                self._thread.start()
            ticket = next(self._seq)
            heapq.heappush(self._heap, (at, ticket, sock))
            self._live.add(ticket)
            self._cond.notify()
            return ticket

    def cancel(self, ticket: int) -> None:
        with self._cond:
            self._live.discard(ticket)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, ticket, sock = self._heap[0]
                delay = at - time.monotonic()
                if delay > 0 and ticket in self._live:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                if ticket not in self._live:
                    continue
                self._live.discard(ticket)
                # under the lock: once cancel() has returned, the socket may be closed and its
                # descriptor reused, and this must not touch it
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_WATCHDOG = _Watchdog()


class _CallFetches:
    """The sockets one hook call has open. ``close()`` shuts them all and refuses new ones."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.closed = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self.closed:
                raise FetchError("timed out")
            self._socks.add(sock)

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)

    def close(self) -> None:
        with self._lock:  # held while shutting: a socket discarded after this may be closed at once
            self.closed = True
            for sock in self._socks:
                _shut(sock)
            self._socks.clear()


_executors: dict[tuple[str, int], ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor(origin: str, size: int) -> ThreadPoolExecutor:
    """The fetch threads of one FHIR server (threads start on demand, up to ``size``)."""
    with _executors_lock:
        pool = _executors.get((origin, size))
        if pool is None:
            pool = _executors[(origin, size)] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fhir-fetch")
        return pool


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        try:
            import certifi

            _tls = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - certifi comes with requests
            _tls = ssl.create_default_context()
    return _tls


class FhirClient:
    """Reads from one ``fhirServer`` on behalf of one hook call."""

    def __init__(self, base_url: str, settings, access_token: str | None = None):
        self.base = normalize_base(base_url)  # UnsafeUrl for a base that is not usable
        parts = urlsplit(self.base)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.settings = settings
        self._headers = {"Accept": "application/fhir+json, application/json"}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"

    @classmethod
    def for_request(cls, request: dict, settings) -> "FhirClient | None":
        """A client for the request's ``fhirServer``, or None when there is none we may call."""
        server = request.get("fhirServer")
        if not isinstance(server, str) or not server:
            return None
        own = not settings.production and own_fhir(server, settings.host, settings.port)
        if not (own or allowed_server(server, settings.fhir_servers, settings.fhir_allow_http)):
            logs.event("fhir.refused", reason="not-allowed")
            return None
        auth = request.get("fhirAuthorization") or {}
        token = auth.get("access_token") if isinstance(auth, dict) else None
        return cls(routed(server, settings.fhir_routes), settings, token if isinstance(token, str) else None)

    # -- one request ----------------------------------------------------------------
    def _target(self, url: str) -> str:
        """``url`` in normal form, when it is at or below the base; else ``FetchError``."""
        try:
            target = normalize_url(url)
        except UnsafeUrl:
            raise FetchError("unsafe URL") from None
        if not inside(target, self.base):
            raise FetchError("URL outside fhirServer")
        return target

    def _get(self, url: str, call: _CallFetches) -> dict:
        """One GET, timed and counted per server origin (``cdshooks_fhir_fetch_*``)."""
        origin = _origin(self.base)
        started = time.monotonic()
        try:
            body = self._get_once(url, call)
        except FetchError as exc:
            metrics.FHIR_FETCH_ERRORS.labels(origin, exc.reason).inc()
            metrics.FHIR_FETCH_SECONDS.labels(origin, "error").observe(time.monotonic() - started)
            raise
        metrics.FHIR_FETCH_SECONDS.labels(origin, "ok").observe(time.monotonic() - started)
        return body

    def _get_once(self, url: str, call: _CallFetches) -> dict:
        target = self._target(url)
        until = min(call.deadline, time.monotonic() + self.settings.fetch_timeout)
        remaining = until - time.monotonic()
        if remaining <= 0 or call.closed:
            raise FetchError("timed out")
        parts = urlsplit(target)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            raw = socket.create_connection((host, port), timeout=remaining)
        except TimeoutError:
            raise FetchError("timed out") from None
        except OSError:
            raise FetchError("connection failed") from None
        ticket = _WATCHDOG.watch(raw, until)
        sock: socket.socket = raw
        try:
            call.add(raw)
            if parts.scheme == "https":
                sock = _tls_context().wrap_socket(raw, server_hostname=host)
            chunks = self._exchange(sock, host, port, parts.netloc, target[len(self.origin):], until)
        except TimeoutError:
            raise FetchError("timed out") from None
        except (OSError, http.client.HTTPException, FetchError) as exc:
            if time.monotonic() >= until or call.closed:
                raise FetchError("timed out") from None  # cut by the watchdog or by the call giving up
            if isinstance(exc, FetchError):
                raise
            raise FetchError("connection failed") from None
        finally:
            _WATCHDOG.cancel(ticket)
            call.discard(raw)
            _shut(raw)  # the server sees the end now, whatever still refers to the socket
            sock.close()
        if time.monotonic() >= until or call.closed:
            raise FetchError("timed out")  # the watchdog may have cut the body short
        try:
            body = json.loads(b"".join(chunks))
        except ValueError:
            raise FetchError("malformed JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FetchError("not a FHIR resource")
        if body["resourceType"] == "OperationOutcome":
            raise FetchError("server answered with an OperationOutcome")
        return body

    def _exchange(self, sock: socket.socket, host: str, port: int, netloc: str, path: str,
                  until: float) -> list[bytes]:
        """Send the GET, read the answer in small reads, checking the time between them."""
        conn = http.client.HTTPConnection(host, port, timeout=max(0.001, until - time.monotonic()))
        conn.sock = sock
        conn.putrequest("GET", path or "/", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", netloc)
        for name, value in self._headers.items():
            conn.putheader(name, value)
        conn.putheader("Connection", "close")
        conn.endheaders()
        resp = conn.getresponse()  # the socket itself is closed by _get, after the watchdog let go of it
        try:
            return self._body(resp, sock, until)
        finally:
            resp.close()

    def _body(self, resp: http.client.HTTPResponse, sock: socket.socket, until: float) -> list[bytes]:
        if resp.status != 200:
            raise FetchError(f"HTTP {resp.status}")
        cap = self.settings.fetch_max_bytes
        if resp.length is not None and resp.length > cap:
            raise FetchError("response too large")
        chunks, size = [], 0
        while True:
            left = until - time.monotonic()
            if left <= 0:
                raise FetchError("timed out")
            sock.settimeout(left)
            chunk = resp.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise FetchError("response too large")
            chunks.append(chunk)
        if resp.length:
            raise FetchError("connection failed")  # the body ended before its Content-Length
        return chunks

    def _search(self, relative: str, call: _CallFetches) -> dict:
        """One search, following ``next`` links up to the page cap, as one searchset Bundle.

        A first page that fails fails the search; a later page that fails, or a ``next`` link
        outside ``fhirServer`` (in normal form), ends it with the results so far, marked
        ``_truncated`` (the key is then incomplete, never "no data")."""
        first = self._get(f"{self.base}/{relative.lstrip('/')}", call)
        if first.get("resourceType") != "Bundle":
            return first  # a read
        return self._follow(first, call)

    def _follow(self, first: dict, call: _CallFetches) -> dict:
        """``first`` (a searchset's first page, ours or the client's) with its ``next`` pages, the first
        page counting as one of ``fetch_page_cap``; cut off as ``_search`` says."""
        first_entries = first.get("entry")
        entries = list(first_entries) if isinstance(first_entries, list) else []
        pages = 1
        next_url = _next_link(first)
        while next_url and pages < self.settings.fetch_page_cap:
            next_url = routed(next_url, self.settings.fhir_routes)  # a server that writes its public URL
            try:
                self._target(next_url)
            except FetchError:
                logs.event("fhir.page_refused", reason="next link points outside fhirServer")
                break  # not followed: the results so far are kept, marked incomplete
            try:
                page = self._get(next_url, call)
            except FetchError as exc:
                logs.event("fhir.page_failed", reason=exc.reason)
                break  # a later page failed: the results so far are kept, marked incomplete
            page_entries = page.get("entry")
            entries.extend(page_entries if isinstance(page_entries, list) else [])
            next_url = _next_link(page)
            pages += 1
        bundle: dict[str, object] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        if next_url:
            bundle["_truncated"] = True
        return bundle

    def _task(self, relative: str, call: _CallFetches) -> dict:
        if call.closed or time.monotonic() >= call.deadline:
            raise FetchError("timed out")  # waited in this server's queue past the call's deadline
        return self._search(relative, call)

    def _continue(self, bundle: dict, call: _CallFetches) -> dict:
        if call.closed or time.monotonic() >= call.deadline:
            raise FetchError("timed out")
        return self._follow(bundle, call)

    def follow_many(self, bundles: dict[str, dict], deadline: float | None = None) -> dict[str, dict]:
        """Each key's searchset page as the client sent it, with its ``next`` pages read from this
        server (in parallel, the client's page counting as one of ``fetch_page_cap``, every ``next``
        link checked as in ``_search``). Never raises: a key whose pages could not all be read before
        ``deadline`` keeps what was read, still marked as having more (``_truncated``, or the
        client's own ``next`` link)."""
        deadline = deadline if deadline is not None else time.monotonic() + self.settings.call_budget
        call = _CallFetches(deadline)
        pool = _executor(self.origin, self.settings.fetch_per_server)
        futures: dict[str, Future] = {key: pool.submit(self._continue, b, call) for key, b in bundles.items()}
        try:
            wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        finally:
            call.close()
        out: dict[str, dict] = {}
        for key, fut in futures.items():
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                out[key] = fut.result()
            else:
                fut.cancel()
                out[key] = bundles[key]  # as sent: its next link keeps it incomplete
        return out

    # -- several keys ---------------------------------------------------------------
    def search_many(self, queries: dict[str, str], deadline: float | None = None,
                    optional: frozenset[str] | set[str] = frozenset()) -> dict[str, dict]:
        """Run each key's search in parallel; all but the ``optional`` keys must succeed before
        ``deadline`` (else ``FetchError``). An optional key whose search fails or is late is left out
        of the result, and never stops the others."""
        deadline = deadline if deadline is not None else time.monotonic() + self.settings.call_budget
        call = _CallFetches(deadline)
        pool = _executor(self.origin, self.settings.fetch_per_server)
        futures: dict[str, Future] = {
            key: pool.submit(self._optional_task if key in optional else self._task, q, call)
            for key, q in queries.items()}
        try:
            done, pending = wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()),
                                 return_when=FIRST_EXCEPTION)
        finally:
            call.close()  # whatever is still reading for this call stops now
        results: dict[str, dict] = {}
        failed: list[str] = []
        left_out: list[str] = []
        reason = "timed out"
        for key, fut in futures.items():
            if fut in pending:
                (left_out if key in optional else failed).append(key)
                fut.cancel()
                continue
            try:
                result = fut.result()
            except FetchError as exc:
                failed.append(key)
                if exc.reason != "timed out" or reason == "timed out":
                    reason = exc.reason
                continue
            if result is None:
                left_out.append(key)
            else:
                results[key] = result
        if left_out:
            logs.event("fhir.fetch_failed", keys=sorted(left_out), reason="optional key not obtained")
        if failed:
            logs.event("fhir.fetch_failed", keys=sorted(failed), reason=reason)
            raise FetchError(reason, sorted(failed))
        return results

    def _optional_task(self, relative: str, call: _CallFetches) -> dict | None:
        try:
            return self._task(relative, call)
        except FetchError:
            return None


def _next_link(bundle: dict) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None
