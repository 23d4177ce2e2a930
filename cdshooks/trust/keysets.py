"""Key sets fetched from ``jku`` URLs: cached, refreshed on an unknown ``kid``, rate-limited.

Only URLs the verifier has already matched against an issuer's allowed prefixes reach
this module. A fetch follows no redirect (a redirect could leave the allowed prefix),
reads at most ``max_bytes`` and ends after the FHIR fetch timeout in all, however slowly
the server sends.

A set is reused for ``ttl`` seconds. A ``kid`` missing from a cached set triggers a
refresh, since clients rotate keys. To keep forged tokens from turning the service into a
request generator, fetches (first fetches and refreshes alike, successful or not) are
rate-limited per issuer and for the whole process, not per URL: an issuer may start
``issuer_burst`` fetches at once and then one per ``min_interval`` seconds; all issuers
together ``global_burst`` and then ``global_per_interval`` per ``min_interval``. A fetch the
limits refuse is not made and leaves no cache entry, so a flood of new URLs cannot evict
the sets in use. When a refresh fails or is refused, the keys fetched before stay in use:
a key server's outage should not lock every clinician out.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from ..logs import event
from .issuers import key_index

__all__ = ["RemoteKeySets", "KeySetUnavailable"]


class KeySetUnavailable(Exception):
    """No copy of the key set at this URL could be obtained."""


@dataclass
class _Entry:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float | None = None       # last successful fetch
    tried_at: float | None = None         # last attempt, successful or not


class _Bucket:
    """A token bucket: ``burst`` tokens, one more every ``period`` seconds."""

    def __init__(self, burst: float, period: float, now: float):
        self.burst, self.period = burst, period
        self.tokens, self.at = burst, now

    def _refill(self, now: float) -> None:
        if self.period > 0 and now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) / self.period)
        self.at = max(self.at, now)

    def available(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1

    def take(self) -> None:
        self.tokens -= 1


class RemoteKeySets:
    """Per-process cache of JWK Sets by URL (each worker process keeps its own)."""

    def __init__(self, timeout: float, clock: Callable[[], float], ttl: float = 3600.0,
                 min_interval: float = 30.0, max_bytes: int = 64 * 1024, max_urls: int = 64,
                 issuer_burst: int = 2, global_burst: int = 8, global_per_interval: int = 4):
        self._timeout = timeout
        self._clock = clock
        self._ttl = ttl
        self._min_interval = min_interval
        self._max_bytes = max_bytes
        self._max_urls = max_urls
        self._issuer_burst = issuer_burst
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._issuers: dict[str, _Bucket] = {}
        self._global = _Bucket(global_burst, min_interval / max(1, global_per_interval), clock())
        self._lock = threading.Lock()

    def key(self, url: str, kid: str, issuer: str) -> dict[str, Any] | None:
        """The JWK with ``kid`` in the set at ``url`` (one of ``issuer``'s), or None when the set lacks it.

        Raises ``KeySetUnavailable`` when the set has never been fetched successfully.
        """
        with self._lock:
            now = self._clock()
            entry = self._entries.get(url)
            if entry is not None:
                self._entries.move_to_end(url)
                fresh = entry.fetched_at is not None and now - entry.fetched_at < self._ttl
                if fresh and kid in entry.keys:
                    return entry.keys[kid]
            if entry is None or entry.tried_at is None or now - entry.tried_at >= self._min_interval:
                if self._may_fetch(issuer, now):
                    if entry is None:
                        entry = self._entries[url] = _Entry()
                        while len(self._entries) > self._max_urls:
                            self._entries.popitem(last=False)
                    self._fetch(url, entry, now)
                else:
                    event("auth.jwks_limited", logging.WARNING, iss=issuer[:200])
            if entry is None or entry.fetched_at is None:
                raise KeySetUnavailable(url)
            return entry.keys.get(kid)

    def _may_fetch(self, issuer: str, now: float) -> bool:
        """Take a fetch from the issuer's and the global budget, when both have one."""
        bucket = self._issuers.get(issuer)
        if bucket is None:
            bucket = self._issuers[issuer] = _Bucket(self._issuer_burst, self._min_interval, now)
        if not (bucket.available(now) and self._global.available(now)):
            return False
        bucket.take()
        self._global.take()
        return True

    def _fetch(self, url: str, entry: _Entry, now: float) -> None:
        entry.tried_at = now
        try:
            entry.keys = self._download(url)
            entry.fetched_at = now
            event("auth.jwks_fetched", url=url, keys=len(entry.keys))
        except ValueError as exc:
            event("auth.jwks_failed", logging.WARNING, url=url, error=type(exc).__name__)

    def _download(self, url: str) -> dict[str, dict[str, Any]]:
        """The key set at ``url``, read within ``timeout`` seconds in all (connecting, waiting,
        reading a body that drips: a timer shuts the socket at the end); ``ValueError`` else."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        until = time.monotonic() + self._timeout
        try:
            raw = socket.create_connection((host, port), timeout=self._timeout)
        except OSError as exc:
            raise ValueError(f"connection failed ({type(exc).__name__})") from None
        cut = _Cutoff(raw, self._timeout)
        sock = raw
        try:
            if parts.scheme == "https":
                sock = _tls_context().wrap_socket(raw, server_hostname=host)
            conn = http.client.HTTPConnection(host, port, timeout=self._timeout)
            conn.sock = sock
            conn.putrequest("GET", parts.path or "/", skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", parts.netloc)
            conn.putheader("Accept", "application/json")
            conn.putheader("Connection", "close")
            conn.endheaders()
            resp = conn.getresponse()
            try:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                body = bytearray()
                while len(body) <= self._max_bytes:
                    left = until - time.monotonic()
                    if left <= 0:
                        raise ValueError("timed out")
                    sock.settimeout(left)
                    chunk = resp.read1(8192)
                    if not chunk:
                        break
                    body += chunk
            finally:
                resp.close()
        except (OSError, http.client.HTTPException) as exc:
            raise ValueError(f"fetch failed ({type(exc).__name__})") from None
        finally:
            cut.cancel()
            sock.close()
        if cut.fired or time.monotonic() >= until:
            raise ValueError("timed out")
        if len(body) > self._max_bytes:
            raise ValueError("key set too large")
        return key_index(json.loads(body), strict=False)


class _Cutoff:
    """Shuts a socket down after ``seconds`` unless cancelled first (a blocked read then ends)."""

    def __init__(self, sock: socket.socket, seconds: float):
        self._sock = sock
        self._lock = threading.Lock()
        self._done = False
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:  # never after cancel(): the socket may be closed and its descriptor reused
            if not self._done:
                self.fired = True
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cancel(self) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        try:
            import certifi

            _tls = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - certifi is installed with requests
            _tls = ssl.create_default_context()
    return _tls
