"""Tokens: mint a CDS Client JWT, as an EHR would, for trying the service with curl.

``mint`` signs with a private key from a file: a JWK (with ``d``), a JWK Set holding
private keys (pick one with ``kid``), or an unencrypted PEM. The algorithm follows the
key: EC P-384 signs ES384, RSA signs RS384. The ``kid`` defaults to the JWK's own, or to
the key's RFC 7638 thumbprint for a PEM. ``iss`` is required, except with the public
sandbox's key pair, where the token is minted exactly as the sandbox mints it
(``iss`` https://sandbox.cds-hooks.org, its ``jku``, ``exp`` = ``iat`` + 300 by default).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from .issuers import SANDBOX_ISSUER, SANDBOX_JKU, sandbox_jwks

__all__ = ["mint", "client_assertion"]

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def mint(key_file: str | Path, audience: str, issuer: str | None = None, kid: str | None = None,
         lifetime: int = 300, tenant: str | None = None, *, jku: str | None = None) -> str:
    """A signed CDS Hooks client JWT for a call to ``audience`` (the exact URL called).

    Raises ``ValueError`` with a readable message for an unusable key or argument.
    """
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    key, file_kid = _private_key(Path(key_file), kid)
    public = _public_jwk(key)
    sandbox = _is_sandbox(public)
    if issuer is None and not sandbox:
        raise ValueError("an issuer (iss) is required unless the key is the public sandbox's key pair")
    iss = issuer or SANDBOX_ISSUER
    headers: dict[str, Any] = {"typ": "JWT", "kid": kid or file_kid or _thumbprint(public)}
    if jku or (sandbox and iss == SANDBOX_ISSUER):
        headers["jku"] = jku or SANDBOX_JKU
    now = int(time.time())
    payload: dict[str, Any] = {"iss": iss, "aud": audience, "iat": now,
                               "exp": now + lifetime, "jti": str(uuid.uuid4())}
    if tenant:
        payload["tenant"] = tenant
    return jwt.encode(payload, key, algorithm=_algorithm(key), headers=headers)


def client_assertion(key_file: str | Path, client_id: str, token_url: str, kid: str | None = None,
                     lifetime: int = 300, *, jku: str | None = None) -> str:
    """A SMART Backend Services client assertion (``private_key_jwt``): ``iss`` = ``sub`` = the client id,
    ``aud`` = the token endpoint, a fresh ``jti``, at most 5 minutes of life; RS384 or ES384 by key type."""
    if not 0 < lifetime <= 300:
        raise ValueError("a client assertion lives at most 300 seconds")
    key, file_kid = _private_key(Path(key_file), kid)
    headers: dict[str, Any] = {"typ": "JWT", "kid": kid or file_kid or _thumbprint(_public_jwk(key))}
    if jku:
        headers["jku"] = jku
    now = int(time.time())
    payload = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now, "exp": now + lifetime,
               "jti": str(uuid.uuid4())}
    return jwt.encode(payload, key, algorithm=_algorithm(key), headers=headers)


def _private_key(path: Path, kid: str | None) -> tuple[_PrivateKey, str | None]:
    """The private key in ``path`` and the ``kid`` the file gives it, if any."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        try:
            jwk = _choose_jwk(json.loads(data), kid, path)
            key = jwt.PyJWK(jwk).key
        except (json.JSONDecodeError, jwt.PyJWTError) as exc:
            raise ValueError(f"{path}: not a usable JWK ({exc})") from None
        file_kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
    else:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise ValueError(f"{path}: encrypted PEM keys are not supported") from None
        except ValueError:
            raise ValueError(f"{path}: not a JWK, JWK Set or PEM private key") from None
        file_kid = None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"{path}: not an EC or RSA private key")
    return key, file_kid


def _choose_jwk(data: Any, kid: str | None, path: Path) -> dict[str, Any]:
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        candidates = [k for k in data["keys"] if isinstance(k, dict) and "d" in k
                      and (kid is None or k.get("kid") == kid)]
        if len(candidates) != 1:
            kids = [k.get("kid") for k in data["keys"] if isinstance(k, dict) and "d" in k]
            raise ValueError(f"{path}: choose one private key with kid; the set has {kids}")
        return candidates[0]
    if isinstance(data, dict) and "kty" in data:
        if "d" not in data:
            raise ValueError(f"{path}: this JWK is a public key; minting needs the private key")
        return data
    raise ValueError(f"{path}: not a JWK or JWK Set")


def _algorithm(key: _PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError("RSA keys need at least 2048 bits")
        return "RS384"
    if isinstance(key.curve, ec.SECP384R1):
        return "ES384"
    raise ValueError(f"EC curve {key.curve.name} is not supported; use P-384 (ES384) or RSA (RS384)")


def _public_jwk(key: _PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return ECAlgorithm.to_jwk(key.public_key(), as_dict=True)


def _thumbprint(public: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), the customary ``kid`` for a key that has none."""
    members = ("e", "kty", "n") if public["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: public[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _is_sandbox(public: dict[str, Any]) -> bool:
    return any(k.get("kty") == public["kty"] and k.get("x") == public.get("x") and k.get("y") == public.get("y")
               for k in sandbox_jwks()["keys"])
