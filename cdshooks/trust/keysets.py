"""Key sets fetched from ``jku`` URLs: cached, refreshed on an unknown ``kid``, rate-limited.

Only URLs the verifier has already matched against an issuer's allowed prefixes reach
this module. A fetch follows no redirect (a redirect could leave the allowed prefix),
reads at most ``max_bytes`` and gives up after the FHIR fetch timeout.

A set is reused for ``ttl`` seconds. A ``kid`` missing from a cached set triggers a
refresh, since clients rotate keys; to keep forged tokens from turning the service into
a request generator, a URL is fetched at most once per ``min_interval`` seconds,
whether the last attempt worked or not. When a refresh fails, the keys fetched before
stay in use: a key server's outage should not lock every clinician out.
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


class RemoteKeySets:
    """Per-process cache of JWK Sets by URL (each worker process keeps its own)."""

    def __init__(self, timeout: float, clock: Callable[[], float], ttl: float = 3600.0,
                 min_interval: float = 30.0, max_bytes: int = 64 * 1024, max_urls: int = 64):
        self._timeout = timeout
        self._clock = clock
        self._ttl = ttl
        self._min_interval = min_interval
        self._max_bytes = max_bytes
        self._max_urls = max_urls
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, url: str, kid: str) -> dict[str, Any] | None:
        """The JWK with ``kid`` in the set at ``url``, or None when the set lacks it.

        Raises ``KeySetUnavailable`` when the set has never been fetched successfully.
        """
        with self._lock:
            now = self._clock()
            entry = self._entries.get(url)
            if entry is None:
                entry = self._entries[url] = _Entry()
                while len(self._entries) > self._max_urls:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(url)
            fresh = entry.fetched_at is not None and now - entry.fetched_at < self._ttl
            if fresh and kid in entry.keys:
                return entry.keys[kid]
            if entry.tried_at is None or now - entry.tried_at >= self._min_interval:
                entry.tried_at = now
                try:
                    entry.keys = self._download(url)
                    entry.fetched_at = now
                    event("auth.jwks_fetched", url=url, keys=len(entry.keys))
                except (requests.RequestException, ValueError) as exc:
                    event("auth.jwks_failed", logging.WARNING, url=url, error=type(exc).__name__)
            if entry.fetched_at is None:
                raise KeySetUnavailable(url)
            return entry.keys.get(kid)

    def _download(self, url: str) -> dict[str, dict[str, Any]]:
        with requests.get(url, timeout=self._timeout, allow_redirects=False, stream=True,
                          headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            body = resp.raw.read(self._max_bytes + 1, decode_content=True)
        if len(body) > self._max_bytes:
            raise ValueError("key set too large")
        return key_index(json.loads(body), strict=False)
