"""A FHIR Bulk Data client (``cdshooks export``): ``$export`` kick-off, polling, download; SMART Backend Services.

1. **Kick-off** at the system (``{base}/$export``), patient (``{base}/Patient/$export``) or group
   (``{base}/Group/{id}/$export``) level with ``Prefer: respond-async``,
   ``_outputFormat=application/fhir+ndjson``, and by default ``_type`` and ``_typeFilter``
   narrowed to what the rules read (``narrowed()``: the hooks' prefetch templates without the
   patient, sort and count parameters; each filter percent-encoded as a whole, so its code
   lists' commas stay inside it). A request too long for a URL is POSTed as a ``Parameters``
   resource. The server answers ``202`` with ``Content-Location``.
2. **Polling** that URL: ``202`` means wait ``Retry-After`` (seconds or an HTTP date; 2 s when
   absent, at most 5 minutes at a time; ``429`` likewise), up to ``max_wait`` seconds in all;
   ``200`` gives the manifest.
3. **Download** of each output file (streamed to ``<out>/<Type>.<n>.ndjson``), with the access
   token only when the manifest says ``requiresAccessToken``; the manifest is kept as
   ``manifest.json``; then the job is deleted on the server.

**SMART Backend Services** (``Auth``): the access token comes from the token endpoint with the
``client_credentials`` grant and a ``private_key_jwt`` client assertion (RS384 for an RSA key,
ES384 for a P-384 key; ``iss`` = ``sub`` = client id, ``aud`` = token endpoint, 5 minutes,
fresh ``jti``), scope ``system/<Type>.read`` for each exported type unless given. It is
renewed a minute before it expires. Tokens are never logged or printed. Without a token endpoint
given, ``token_endpoint()`` reads it from the server's SMART configuration
(``{base}/.well-known/smart-configuration``, its ``token_endpoint``).

Plain ``http`` is accepted only for loopback hosts; redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode, urlparse

import requests

from ..service.engine import SERVICE_IDS, Engine
from ..service.hook_request import InputError
from ..trust.tokens import client_assertion

__all__ = ["Auth", "ExportError", "export", "narrowed", "token_endpoint"]

_MAX_URL = 6000
_DEFAULT_WAIT = 2.0
_LONGEST_WAIT = 300.0
_DROPPED = ("patient", "subject", "_sort", "_count", "_include", "_revinclude", "_offset")


class ExportError(InputError):
    """The export could not be done; the message is meant for the user."""


def _check_url(url: str, what: str) -> None:
    parts = urlparse(url)
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return
    raise ExportError(f"{what} must be an https URL (plain http only on loopback): {url}")


def narrowed(engine: Engine, hooks: list[str]) -> tuple[list[str], list[str]]:
    """``(_type, _typeFilter)`` for what the rules of ``hooks`` read: one filter per prefetch template."""
    from urllib.parse import parse_qsl

    types: list[str] = ["Patient"]
    filters: list[str] = []
    for hook in hooks:
        for template in engine.services[SERVICE_IDS[hook]].prefetch.values():
            rtype, _, query = template.partition("?")
            if "/" in rtype:
                continue  # a read (Patient/{{context.patientId}}): the Patient is exported anyway
            if rtype not in types:
                types.append(rtype)
            if "_include=MedicationRequest:medication" in query and "Medication" not in types:
                types.append("Medication")
            kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _DROPPED]
            if kept:
                text = f"{rtype}?" + "&".join(f"{k}={quote(v, safe='|:/')}" for k, v in kept)
                if text not in filters:
                    filters.append(text)
    return types, filters


@dataclass
class Auth:
    """SMART Backend Services credentials: client id, private key (JWK or PEM file), token endpoint."""

    token_url: str
    client_id: str
    key_file: str
    kid: str | None = None
    jku: str | None = None
    scope: str | None = None
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0

    def token(self, session: requests.Session, types: list[str], timeout: float) -> str:
        if self._token and time.monotonic() < self._expires - 60:
            return self._token
        _check_url(self.token_url, "the token endpoint")
        try:
            assertion = client_assertion(self.key_file, self.client_id, self.token_url, self.kid, jku=self.jku)
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot sign the client assertion: {exc}") from None
        scope = self.scope or " ".join(f"system/{t}.read" for t in types)
        try:
            resp = session.post(self.token_url, timeout=timeout, allow_redirects=False, data={
                "grant_type": "client_credentials", "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion}, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise ExportError(f"cannot reach the token endpoint: {type(exc).__name__}") from None
        body = _json(resp)
        if resp.status_code != 200 or not isinstance(body.get("access_token"), str):
            error = body.get("error_description") or body.get("error") or resp.reason
            raise ExportError(f"the token endpoint refused the client ({resp.status_code}: {error})")
        self._token = body["access_token"]
        expires = body.get("expires_in")
        self._expires = time.monotonic() + (float(expires) if isinstance(expires, (int, float)) else 300.0)
        return self._token


def token_endpoint(base_url: str, *, timeout: float = 60.0, session: requests.Session | None = None) -> str:
    """The token endpoint of the FHIR server at ``base_url``, from ``{base}/.well-known/smart-configuration``."""
    base = base_url.rstrip("/")
    _check_url(base, "the FHIR base URL")
    url = f"{base}/.well-known/smart-configuration"
    try:
        resp = (session or requests.Session()).get(url, headers={"Accept": "application/json"}, timeout=timeout,
                                                   allow_redirects=False)
    except requests.RequestException as exc:
        raise ExportError(f"cannot read {url}: {type(exc).__name__}") from None
    found = _json(resp).get("token_endpoint") if resp.status_code == 200 else None
    if not isinstance(found, str) or not found:
        why = f"answered {resp.status_code}" if resp.status_code != 200 else "has no token_endpoint"
        raise ExportError(f"no --token-url given and {url} {why}")
    _check_url(found, "the token endpoint")
    return found


def _json(resp: requests.Response) -> dict:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _problem(resp: requests.Response) -> str:
    body = _json(resp)
    issues = body.get("issue") if body.get("resourceType") == "OperationOutcome" else None
    detail = (issues[0].get("diagnostics") if issues and isinstance(issues[0], dict) else None) or resp.reason
    return f"{resp.status_code}: {detail}"


def _wait_seconds(value: str | None) -> float:
    if not value:
        return _DEFAULT_WAIT
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return _DEFAULT_WAIT
    return min(_LONGEST_WAIT, max(0.5, seconds))


def export(base_url: str, out: str | Path, *, level: str = "system", group: str | None = None,
           types: list[str] | None = None, type_filters: list[str] | None = None, since: str | None = None,
           auth: Auth | None = None, max_wait: float = 24 * 3600, timeout: float = 60.0,
           progress: Callable[[str], None] = lambda _m: None, session: requests.Session | None = None) -> list[Path]:
    """Run one ``$export`` and download its files into ``out``; the paths written."""
    base = base_url.rstrip("/")
    _check_url(base, "the FHIR base URL")
    if level == "group" and not group:
        raise ExportError("a group-level export needs the group id")
    target = {"system": f"{base}/$export", "patient": f"{base}/Patient/$export",
              "group": f"{base}/Group/{quote(group or '', safe='')}/$export"}[level]
    params: list[tuple[str, str]] = [("_outputFormat", "application/fhir+ndjson")]
    if types:
        params.append(("_type", ",".join(types)))
    params += [("_typeFilter", f) for f in type_filters or []]
    if since:
        params.append(("_since", since))
    session = session or requests.Session()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)

    def headers(accept: str, with_token: bool = True) -> dict[str, str]:
        h = {"Accept": accept}
        if auth is not None and with_token:
            h["Authorization"] = f"Bearer {auth.token(session, types or ['*'], timeout)}"
        return h

    kick = dict(headers("application/fhir+json"), Prefer="respond-async")
    url = f"{target}?{urlencode(params)}"
    try:
        if len(url) <= _MAX_URL:
            resp = session.get(url, headers=kick, timeout=timeout, allow_redirects=False)
        else:
            parameters = {"resourceType": "Parameters",
                          "parameter": [{"name": k, "valueString": v} for k, v in params]}
            resp = session.post(target, data=json.dumps(parameters), timeout=timeout, allow_redirects=False,
                                headers=dict(kick, **{"Content-Type": "application/fhir+json"}))
    except requests.RequestException as exc:
        raise ExportError(f"cannot reach {base}: {type(exc).__name__}") from None
    status_url = resp.headers.get("Content-Location")
    if resp.status_code != 202 or not status_url:
        raise ExportError(f"the server did not start the export ({_problem(resp)})")
    _check_url(status_url, "the status URL")
    progress(f"export started ({level} level, {len(types or [])} types, {len(type_filters or [])} filters)")

    started = time.monotonic()
    while True:
        try:
            resp = session.get(status_url, headers=headers("application/json"), timeout=timeout,
                               allow_redirects=False)
        except requests.RequestException as exc:
            raise ExportError(f"cannot poll the export status: {type(exc).__name__}") from None
        if resp.status_code == 200:
            break
        if resp.status_code not in (202, 429):
            raise ExportError(f"the export failed ({_problem(resp)})")
        wait = _wait_seconds(resp.headers.get("Retry-After"))
        if time.monotonic() - started + wait > max_wait:
            raise ExportError(f"the export did not finish within {max_wait:.0f} s")
        progress(f"export running ({resp.headers.get('X-Progress') or 'in progress'}); next poll in {wait:.0f} s")
        time.sleep(wait)
    manifest = _json(resp)
    outputs = manifest.get("output")
    if not isinstance(outputs, list):
        raise ExportError("the export manifest has no output list")
    needs_token = bool(manifest.get("requiresAccessToken"))
    written: list[Path] = []
    counters: dict[str, int] = {}
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        rtype = str(item.get("type") or "Resource")
        if not rtype.isalnum():
            rtype = "Resource"
        _check_url(item["url"], "an output file URL")
        n = counters[rtype] = counters.get(rtype, 0) + 1
        path = folder / f"{rtype}.{n:03d}.ndjson"
        try:
            with session.get(item["url"], headers=headers("application/fhir+ndjson", needs_token), stream=True,
                             timeout=timeout, allow_redirects=False) as file_resp:
                if file_resp.status_code != 200:
                    raise ExportError(f"cannot download the {rtype} file ({_problem(file_resp)})")
                with open(path, "wb") as f:
                    for block in file_resp.iter_content(1 << 20):
                        f.write(block)
        except requests.RequestException as exc:
            raise ExportError(f"cannot download the {rtype} file: {type(exc).__name__}") from None
        written.append(path)
        progress(f"downloaded {path.name}")
    errors = [e for e in manifest.get("error") or [] if isinstance(e, dict)]
    (folder / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items()}, indent=2), "utf-8")
    if errors:
        progress(f"the server reported {len(errors)} error file(s); see manifest.json")
    try:
        session.delete(status_url, headers=headers("application/json"), timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        pass
    return written
