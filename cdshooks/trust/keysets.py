"""Key sets fetched from ``jku`` URLs: cached, refreshed on an unknown ``kid``, rate-limited.

Only URLs the verifier has already matched against an issuer's allowed prefixes reach
this module. A fetch follows no redirect (a redirect could leave the allowed prefix),
reads at most ``max_bytes`` and gives up after the FHIR fetch timeout.

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

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

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
        except (requests.RequestException, ValueError) as exc:
            event("auth.jwks_failed", logging.WARNING, url=url, error=type(exc).__name__)

    def _download(self, url: str) -> dict[str, dict[str, Any]]:
        with requests.get(url, timeout=self._timeout, allow_redirects=False, stream=True,
                          headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            body = resp.raw.read(self._max_bytes + 1, decode_content=True)
        if len(body) > self._max_bytes:
            raise ValueError("key set too large")
        return key_index(json.loads(body), strict=False)
