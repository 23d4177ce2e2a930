"""FHIR client: the guarded outbound path to a caller's ``fhirServer``.

Only base URLs listed in ``CDSHOOKS_FHIR_SERVERS`` are contacted; plain ``http`` only on
loopback; redirects are not followed; responses are capped in size; the bearer token
goes only to the ``fhirServer`` it came with (a ``next`` link elsewhere is refused).
Searches for several prefetch keys run in parallel, each bounded by the fetch timeout
and all by the call's deadline. Any failure is a ``FetchError``: *data not obtainable*,
never *no data*.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from urllib.parse import urlsplit

import requests

from .. import logs

__all__ = ["FhirClient", "FetchError", "allowed_server", "normalize_base"]

_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fhir-fetch")
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxies or netrc credentials picked up from the environment
        _local.session = session
    return session


class FetchError(Exception):
    def __init__(self, reason: str, keys: list[str] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.keys = keys or []


def normalize_base(url: str) -> str:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" if port in (None, default) else f"[{host}]:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_server(url: str, allowlist: tuple[str, ...], allow_http: bool = False) -> bool:
    """Whether the service may call ``url``: listed, and https unless on loopback (or ``allow_http``)."""
    try:
        parts = urlsplit(url)
        base = normalize_base(url)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return False
    if parts.scheme == "http" and not (allow_http or _is_loopback(parts.hostname)):
        return False
    for entry in allowlist:
        allowed = normalize_base(entry)
        if base == allowed or base.startswith(allowed + "/"):
            return True
    return False


class FhirClient:
    """Reads from one ``fhirServer`` on behalf of one hook call."""

    def __init__(self, base_url: str, settings, access_token: str | None = None):
        self.base = base_url.rstrip("/")
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
        if not allowed_server(server, settings.fhir_servers, settings.fhir_allow_http):
            logs.event("fhir.refused", reason="not-allowed")
            return None
        auth = request.get("fhirAuthorization") or {}
        token = auth.get("access_token") if isinstance(auth, dict) else None
        return cls(server, settings, token if isinstance(token, str) else None)

    # -- one request ----------------------------------------------------------------
    def _get(self, url: str, deadline: float) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("time budget exhausted")
        timeout = min(self.settings.fetch_timeout, remaining)
        try:
            resp = _session().get(url, headers=self._headers, timeout=timeout, allow_redirects=False, stream=True)
        except requests.Timeout:
            raise FetchError("timed out") from None
        except requests.RequestException:
            raise FetchError("connection failed") from None
        try:
            if resp.status_code != 200:
                raise FetchError(f"HTTP {resp.status_code}")
            cap = self.settings.fetch_max_bytes
            chunks, size = [], 0
            for chunk in resp.iter_content(65536):
                size += len(chunk)
                if size > cap:
                    raise FetchError("response too large")
                if time.monotonic() > deadline:
                    raise FetchError("timed out")
                chunks.append(chunk)
        except requests.RequestException:
            raise FetchError("connection failed") from None
        finally:
            resp.close()
        try:
            body = json.loads(b"".join(chunks))
        except ValueError:
            raise FetchError("malformed JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FetchError("not a FHIR resource")
        if body["resourceType"] == "OperationOutcome":
            raise FetchError("server answered with an OperationOutcome")
        return body

    def _search(self, relative: str, deadline: float) -> dict:
        """One search, following ``next`` links up to the page cap, as one searchset Bundle.

    A first page that fails fails the search; a later page that fails, or a ``next`` link
    outside ``fhirServer``, ends it with the results so far, marked ``_truncated`` (the
    key is then incomplete, never "no data")."""
        url = f"{self.base}/{relative.lstrip('/')}"
        first = self._get(url, deadline)
        if first.get("resourceType") != "Bundle":
            return first  # a read
        first_entries = first.get("entry")
        entries = list(first_entries) if isinstance(first_entries, list) else []
        pages = 1
        next_url = _next_link(first)
        while next_url and pages < self.settings.fetch_page_cap:
            if not (normalize_base(next_url) + "/").startswith(normalize_base(self.base) + "/"):
                logs.event("fhir.page_refused", reason="next link points outside fhirServer")
                break  # not followed: the results so far are kept, marked incomplete
            try:
                page = self._get(next_url, deadline)
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

    # -- several keys ---------------------------------------------------------------
    def search_many(self, queries: dict[str, str], deadline: float | None = None) -> dict[str, dict]:
        """Run each key's search in parallel; all must succeed before ``deadline``."""
        deadline = deadline if deadline is not None else time.monotonic() + self.settings.call_budget
        futures = {key: _POOL.submit(self._search, q, deadline) for key, q in queries.items()}
        done, pending = wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()),
                             return_when=FIRST_EXCEPTION)
        results: dict[str, dict] = {}
        failed: list[str] = []
        reason = "timed out"
        for key, fut in futures.items():
            if fut in pending:
                failed.append(key)
                fut.cancel()
                continue
            try:
                results[key] = fut.result()
            except FetchError as exc:
                failed.append(key)
                reason = exc.reason
        if failed:
            logs.event("fhir.fetch_failed", keys=sorted(failed), reason=reason)
            raise FetchError(reason, sorted(failed))
        return results


def _next_link(bundle: dict) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None
