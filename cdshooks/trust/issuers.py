"""Trusted issuers: which CDS Clients may call this service, and where their public keys are.

The trusted-issuers file (``CDSHOOKS_TRUSTED_ISSUERS``) is JSON::

    {"issuers": [
      {"iss": "https://ehr.example.org", "jwks": {"keys": [...]}},
      {"iss": "https://other.example.org", "jwks_file": "other-jwks.json"},
      {"iss": "https://fhir.example.org/api/FHIR/R4",
       "jku": ["https://fhir.example.org/api/keys/"],
       "audiences": ["https://cds.example.org/hooks"], "tenants": ["org-1"]}
    ]}

Each issuer names its keys out of band (``jwks`` inline, ``jwks_file`` relative to the
file), or the URL prefixes its ``jku`` header may point to, or both. ``audiences`` are
extra accepted ``aud`` values (EHRs such as Epic let the site type the audience);
``tenants``, when given, is the list of accepted ``tenant`` claims.

Keys configured here must be public signing keys (EC, RSA of 2048 bits or more, OKP):
a private or symmetric key in this file is a start-up error, because a secret shared
with a config file is no proof of who signed. ``CDSHOOKS_TRUST_SANDBOX`` adds the
public CDS Hooks sandbox with its published key set, shipped in ``cdshooks/trust/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import ConfigError, Settings

__all__ = ["Issuer", "load_issuers", "key_index", "fetchable", "SANDBOX_ISSUER", "SANDBOX_JKU",
           "sandbox_jwks"]

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"

_MEMBERS = {"iss", "jwks", "jwks_file", "jku", "audiences", "tenants"}
_PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class Issuer:
    """One trusted ``iss``: its out-of-band keys by ``kid``, allowed ``jku`` prefixes, audiences, tenants."""

    iss: str
    keys: Mapping[str, dict[str, Any]]
    jku: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()


def fetchable(url: str, env: str) -> bool:
    """Whether a key-set URL may be fetched at all: https with a host, no credentials, no
    query string and no fragment (either would make endless distinct URLs of one key set),
    no dot segments (which would step out of an allowed prefix).

    Plain http is allowed only to a loopback host and only with ``CDSHOOKS_ENV=test``,
    so tests can serve key sets from 127.0.0.1.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme == "https":
        ok = bool(host)
    elif parts.scheme == "http":
        ok = env == "test" and host in _LOOPBACK
    else:
        ok = False
    segments = unquote(parts.path).split("/")
    return (ok and parts.username is None and parts.password is None and "?" not in url and "#" not in url
            and "\\" not in url and "." not in segments and ".." not in segments)


def key_index(jwk_set: Any, strict: bool) -> dict[str, dict[str, Any]]:
    """The signing keys of a JWK Set by ``kid``.

    ``strict`` (configured sets) raises ``ValueError`` on any unusable member; otherwise
    (fetched sets) unusable members are skipped, so one odd key does not hide the rest.
    """
    if not isinstance(jwk_set, dict) or not isinstance(jwk_set.get("keys"), list):
        raise ValueError('a JWK Set is an object with a "keys" list')
    index: dict[str, dict[str, Any]] = {}
    for n, jwk in enumerate(jwk_set["keys"]):
        try:
            kid = _signing_key(jwk)
            if kid in index:
                raise ValueError(f"kid {kid!r} appears twice")
        except ValueError as exc:
            if strict:
                raise ValueError(f"keys[{n}]: {exc}") from None
            continue
        index[kid] = jwk
    if strict and not index:
        raise ValueError("the JWK Set has no keys")
    return index


def _signing_key(jwk: Any) -> str:
    """Check one JWK is a usable public signing key; return its ``kid``."""
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError('no "kid"')
    if jwk.get("kty") not in {"EC", "RSA", "OKP"}:
        raise ValueError(f"kty {jwk.get('kty')!r} is not an asymmetric key type")
    if _PRIVATE & jwk.keys():
        raise ValueError(f"kid {kid!r} holds private key material; configure public keys only")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"kid {kid!r} is not a signing key (use {jwk.get('use')!r})")
    try:
        key = jwt.PyJWK(jwk).key
    except jwt.PyJWTError as exc:
        raise ValueError(f"kid {kid!r} is not a valid key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise ValueError(f"kid {kid!r} is an RSA key of {key.key_size} bits; 2048 is the minimum")
    return kid


def sandbox_jwks() -> dict[str, Any]:
    """The public CDS Hooks sandbox's published JWK Set, shipped with the package."""
    text = resources.files("cdshooks").joinpath("trust/sandbox-jwks.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_issuers(settings: Settings) -> dict[str, Issuer]:
    """Every trusted issuer by ``iss``; a malformed file raises ``ConfigError`` naming the problem."""
    by_iss = _read_file(Path(settings.trusted_issuers), settings.env) if settings.trusted_issuers else {}
    if settings.trust_sandbox:
        if SANDBOX_ISSUER in by_iss:
            raise ConfigError(f"CDSHOOKS_TRUSTED_ISSUERS {settings.trusted_issuers}: lists {SANDBOX_ISSUER}, "
                              "which CDSHOOKS_TRUST_SANDBOX adds already")
        by_iss[SANDBOX_ISSUER] = Issuer(SANDBOX_ISSUER, key_index(sandbox_jwks(), strict=True))
    return by_iss


def _read_file(path: Path, env: str) -> dict[str, Issuer]:
    where = f"CDSHOOKS_TRUSTED_ISSUERS {path}"
    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("issuers"), list):
        raise ConfigError(f'{where}: expected {{"issuers": [...]}}')
    out: dict[str, Issuer] = {}
    for n, entry in enumerate(data["issuers"]):
        try:
            issuer = _issuer(entry, path.parent, env)
            if issuer.iss in out:
                raise ValueError("this iss is configured twice")
            out[issuer.iss] = issuer
        except ValueError as exc:
            label = entry.get("iss") if isinstance(entry, dict) else None
            raise ConfigError(f"{where}: issuers[{n}]" + (f" ({label})" if isinstance(label, str) else "")
                              + f": {exc}") from None
    return out


def _issuer(entry: Any, base: Path, env: str) -> Issuer:
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    unknown = sorted(entry.keys() - _MEMBERS)
    if unknown:
        raise ValueError(f"unknown member(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_MEMBERS))}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss:
        raise ValueError('"iss" must be a non-empty string')
    keys: dict[str, dict[str, Any]] = {}
    if "jwks" in entry:
        keys.update(key_index(entry["jwks"], strict=True))
    if "jwks_file" in entry:
        if not isinstance(entry["jwks_file"], str):
            raise ValueError('"jwks_file" must be a path')
        file = base / entry["jwks_file"]
        try:
            file_keys = key_index(json.loads(file.read_text("utf-8")), strict=True)
        except OSError as exc:
            raise ValueError(f"jwks_file {file}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise ValueError(f"jwks_file {file}: {exc}") from None
        if file_keys.keys() & keys.keys():
            raise ValueError("jwks and jwks_file share a kid")
        keys.update(file_keys)
    jku = _strings(entry, "jku")
    for prefix in jku:
        if not fetchable(prefix, env) or not urlsplit(prefix).path:
            raise ValueError(f"jku prefix {prefix!r} must be an https URL with a path, "
                             "e.g. https://ehr.example.org/keys/")
    if not keys and not jku:
        raise ValueError('needs keys: "jwks", "jwks_file" or "jku"')
    return Issuer(iss, keys, jku, _strings(entry, "audiences"), _strings(entry, "tenants"))


def _strings(entry: dict[str, Any], name: str) -> tuple[str, ...]:
    value = entry.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f'"{name}" must be a list of non-empty strings')
    return tuple(value)
