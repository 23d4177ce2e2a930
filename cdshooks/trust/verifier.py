"""Auth: verifies the signed JWT a CDS Client sends with every call (CDS Hooks 2.0, Security).

``Verifier.check`` takes the ``Authorization`` header and the URL that was called, and
returns the token's ``Claims`` or raises ``Unauthorized(reason)``. Checks, in order:

1. ``Bearer`` header present (``missing``), a compact JWS (``malformed``);
2. header ``typ`` is JWT (``typ``), ``alg`` on the configured list and never ``none`` or
   HMAC (``alg``), ``kid`` present (``kid``);
3. ``iss`` is a trusted issuer (``iss``);
4. the key: by ``kid`` from the issuer's configured keys, else from its ``jku`` when the
   header's ``jku`` starts with one of the issuer's allowed prefixes (``jku``; ``jwks``
   when that key set cannot be fetched; ``kid`` when no key has that id);
5. the signature, with the algorithm bound to the key (``signature``, ``alg``);
6. ``aud`` is the called URL or one of the issuer's audiences (``aud``);
7. ``exp`` (``expired``), ``nbf`` and ``iat`` (``nbf``, ``iat``) with the clock skew,
   and ``exp - iat`` at most the maximum lifetime (``lifetime``);
8. ``jti`` present (``jti``), ``tenant`` allowed when the issuer lists tenants
   (``tenant``), and last the ``jti`` is claimed in the shared replay store (``replay``),
   so only tokens that pass every other check are recorded.

Every rejection is logged as ``auth.rejected`` with its reason and the claimed ``iss``,
never the token. The HTTP answer carries no reason (``errors.Unauthenticated``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import jwt

from .. import metrics
from ..config import ConfigError, Settings
from ..logs import event
from .issuers import Issuer, fetchable, load_issuers
from .keysets import KeySetUnavailable, RemoteKeySets

__all__ = ["Verifier", "Claims", "Unauthorized", "ReplayStore", "REASONS"]

REASONS = frozenset({
    "missing", "malformed", "typ", "alg", "kid", "iss", "jku", "jwks", "signature", "aud",
    "expired", "nbf", "iat", "lifetime", "jti", "tenant", "replay",
})

_BEARER = re.compile(r"Bearer +([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)", re.IGNORECASE)
_MAX_TOKEN = 16 * 1024
_MAX_JTI = 255


class Unauthorized(Exception):
    """The call is not authenticated; ``reason`` is a short code from ``REASONS`` for the logs."""

    def __init__(self, reason: str, iss: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.iss = iss


class ReplayStore(Protocol):
    """Remembers every ``jti`` until its token expires, across worker processes."""

    def claim_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record the ``jti``; True when it was not seen before."""
        ...


@dataclass(frozen=True)
class Claims:
    """What a verified token says about the caller (safe to log: iss, tenant, jti)."""

    iss: str
    aud: str                   # the accepted audience value
    jti: str
    issued_at: datetime
    expires_at: datetime
    kid: str
    tenant: str | None = None
    sub: str | None = None


class Verifier:
    """Checks client JWTs against the trusted issuers; built once per worker process."""

    def __init__(self, settings: Settings, replay: ReplayStore, *, clock: Callable[[], float] = time.time,
                 jwks_ttl: float = 3600.0, jwks_min_interval: float = 30.0):
        self._issuers = load_issuers(settings)
        if not self._issuers:
            raise ConfigError("no trusted issuers: set CDSHOOKS_TRUSTED_ISSUERS (or, for testing only, "
                              "CDSHOOKS_TRUST_SANDBOX=1), or turn authentication off with CDSHOOKS_AUTH=off")
        # config refuses these too; repeated here because Settings(...) can be built unchecked
        self._algorithms = frozenset(a for a in settings.jwt_algorithms
                                     if a.upper() != "NONE" and not a.upper().startswith("HS"))
        self._settings = settings
        self._replay = replay
        self._clock = clock
        self._remote = RemoteKeySets(settings.fetch_timeout, clock, jwks_ttl, jwks_min_interval)

    def check(self, authorization_header: str | None, audience: str) -> Claims:
        """The claims of a valid token for a call to ``audience``; raises ``Unauthorized``."""
        try:
            claims = self._check(authorization_header, audience)
        except Unauthorized as exc:
            event("auth.rejected", logging.WARNING, reason=exc.reason, iss=exc.iss)
            metrics.AUTH_REJECTIONS.labels(exc.reason).inc()
            raise
        event("auth.accepted", logging.DEBUG, iss=claims.iss, tenant=claims.tenant, jti=claims.jti)
        return claims

    def _check(self, authorization: str | None, audience: str) -> Claims:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, RecursionError):
            raise Unauthorized("malformed") from None
        typ, alg, kid = header.get("typ"), header.get("alg"), header.get("kid")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise Unauthorized("typ")
        if alg not in self._algorithms:
            raise Unauthorized("alg")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("kid")
        iss = unverified.get("iss")
        shown = iss[:200] if isinstance(iss, str) else None
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized("iss", shown)
        try:
            payload = self._verified(token, self._key(issuer, kid, header.get("jku")), alg)
            return self._claims(payload, issuer, audience, kid)
        except Unauthorized as exc:
            raise Unauthorized(exc.reason, issuer.iss) from None

    def _key(self, issuer: Issuer, kid: str, jku: Any) -> dict[str, Any]:
        """The issuer's public JWK with this ``kid``. A ``jku`` is only used, and only
        checked, for issuers configured with ``jku`` prefixes; for an issuer whose keys
        are configured out of band it is ignored and nothing is fetched."""
        allowed = (isinstance(jku, str) and fetchable(jku, self._settings.env)
                   and any(jku.startswith(prefix) for prefix in issuer.jku))
        if jku is not None and issuer.jku and not allowed:
            raise Unauthorized("jku")
        if kid in issuer.keys:
            return dict(issuer.keys[kid])
        if not allowed:
            raise Unauthorized("jku" if issuer.jku and not issuer.keys else "kid")
        try:
            jwk = self._remote.key(jku, kid, issuer.iss)
        except KeySetUnavailable:
            raise Unauthorized("jwks") from None
        if jwk is None:
            raise Unauthorized("kid")
        return jwk

    def _verified(self, token: str, jwk: dict[str, Any], alg: str) -> dict[str, Any]:
        """The payload, once the signature verifies with ``jwk`` under ``alg`` (and the JWK's own ``alg``)."""
        if jwk.get("alg", alg) != alg:
            raise Unauthorized("alg")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise Unauthorized("alg") from None       # e.g. an RSA key named by an ES384 token
        try:
            decoded = jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg],
                                                  options={"enforce_minimum_key_length": True})
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
            raise Unauthorized("signature") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized("alg") from None
        except jwt.PyJWTError:
            raise Unauthorized("malformed") from None
        try:
            payload = json.loads(decoded["payload"])
        except (ValueError, RecursionError):
            raise Unauthorized("malformed") from None
        if not isinstance(payload, dict):
            raise Unauthorized("malformed")
        return payload

    def _claims(self, payload: dict[str, Any], issuer: Issuer, audience: str, kid: str) -> Claims:
        accepted = _audience(payload.get("aud"), (audience, *issuer.audiences))
        now, skew = self._clock(), self._settings.jwt_clock_skew
        exp, iat = _numeric(payload, "exp"), _numeric(payload, "iat")
        if now > exp + skew:
            raise Unauthorized("expired")
        if "nbf" in payload and _numeric(payload, "nbf") > now + skew:
            raise Unauthorized("nbf")
        if iat > now + skew:
            raise Unauthorized("iat")
        if exp - iat > self._settings.jwt_max_lifetime:
            raise Unauthorized("lifetime")
        jti = payload.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
            raise Unauthorized("jti")
        tenant = payload.get("tenant")
        if issuer.tenants and tenant not in issuer.tenants:
            raise Unauthorized("tenant")
        expires_at = datetime.fromtimestamp(exp, timezone.utc)
        # kept until the token can no longer pass the exp check, skew included
        if not self._replay.claim_jti(issuer.iss, jti, datetime.fromtimestamp(exp + skew, timezone.utc)):
            raise Unauthorized("replay")
        sub = payload.get("sub")
        return Claims(iss=issuer.iss, aud=accepted, jti=jti, kid=kid, expires_at=expires_at,
                      issued_at=datetime.fromtimestamp(iat, timezone.utc),
                      tenant=tenant if isinstance(tenant, str) else None,
                      sub=sub if isinstance(sub, str) else None)


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise Unauthorized("missing")
    scheme = authorization.strip().split(" ", 1)[0]
    if scheme.lower() != "bearer":
        raise Unauthorized("missing")
    match = _BEARER.fullmatch(authorization.strip())
    if match is None or len(match.group(1)) > _MAX_TOKEN:
        raise Unauthorized("malformed")
    return match.group(1)


def _audience(aud: Any, acceptable: tuple[str, ...]) -> str:
    """The first ``aud`` value that is acceptable; a single trailing slash is not significant."""
    wanted = {_unslashed(a) for a in acceptable if _unslashed(a)}
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    for value in values:
        if isinstance(value, str) and _unslashed(value) in wanted:
            return value
    raise Unauthorized("aud")


def _unslashed(url: str) -> str:
    return url.removesuffix("/")


# NumericDate claims must be finite and inside what a datetime can hold (year 9999): NaN,
# Infinity and 10^400 are refused as malformed rather than reaching datetime arithmetic.
_MAX_NUMERIC_DATE = 253402300799.0


def _numeric(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unauthorized("malformed")
    try:
        number = float(value)
    except OverflowError:
        raise Unauthorized("malformed") from None
    if not 0 <= number <= _MAX_NUMERIC_DATE:  # False for NaN too
        raise Unauthorized("malformed")
    return number
