"""Client JWT verification (``cdshooks.auth.Verifier``), trusted-issuer files, jku key sets
and ``cdshooks.tokens.mint``: real keys, real signatures, a real SQLite replay store and a
real loopback HTTP server (``tests/loopback.py``) for ``jku``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cdshooks.config import ConfigError, Settings
from cdshooks.logs import JsonFormatter
from cdshooks.store import Store
from cdshooks.trust import issuers, tokens
from cdshooks.trust.verifier import REASONS, Unauthorized, Verifier

from ..drip import serve_drip
from ..loopback import serve_wsgi

SANDBOX_KEYS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "sandbox-keys"

EHR = "https://ehr.example.org/fhir"
OTHER_EHR = "https://other-ehr.example.org"
TENANT_EHR = "https://tenant-ehr.example.org"
JKU_EHR = "https://jku-ehr.example.org"
BASE = "https://cds.example.org"
DISCOVERY = f"{BASE}/cds-services"
SERVICE = f"{BASE}/cds-services/fasciculation-patient-view"
SITE_AUDIENCE = "https://site-configured.example.org/hooks"


# -- keys and tokens ------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys():
    """Freshly generated keys: EC P-384, RSA 2048, and strangers the service does not know."""
    return {
        "ec": ec.generate_private_key(ec.SECP384R1()),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "stranger": ec.generate_private_key(ec.SECP384R1()),
        "p256": ec.generate_private_key(ec.SECP256R1()),
    }


def public_jwk(key, kid: str, alg: str | None = None) -> dict:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = algorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": kid, "use": "sig"}
    return jwk | ({"alg": alg} if alg else {})


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(now: float | None = None, **changes) -> dict:
    """A valid payload for a service call; a change to None removes the claim."""
    now = time.time() if now is None else now
    body = {"iss": EHR, "aud": SERVICE, "iat": int(now), "exp": int(now) + 300, "jti": str(uuid.uuid4())}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def sign(key, payload: dict, alg: str = "ES384", **header) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers=header)


def bearer(token: str) -> str:
    return f"Bearer {token}"


# -- the service under test -----------------------------------------------------------
@pytest.fixture
def store(db_url):
    """The replay cache on a real database: SQLite, then PostgreSQL."""
    store = Store(db_url)
    store.init()
    yield store
    store.dispose()


def write_issuers(tmp_path: Path, entries: list[dict]) -> str:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": entries}))
    return str(path)


@pytest.fixture
def issuers_file(tmp_path, keys):
    (tmp_path / "tenant-jwks.json").write_text(json.dumps({"keys": [public_jwk(keys["ec"], "t-1", "ES384")]}))
    return write_issuers(tmp_path, [
        {"iss": EHR, "jwks": {"keys": [public_jwk(keys["ec"], "ec-1", "ES384"), public_jwk(keys["rsa"], "rsa-1")]}},
        {"iss": OTHER_EHR, "jwks": {"keys": [public_jwk(keys["ec"], "ec-1", "ES384")]}},
        {"iss": TENANT_EHR, "jwks_file": "tenant-jwks.json", "tenants": ["org-1"], "audiences": [SITE_AUDIENCE]},
        {"iss": JKU_EHR, "jku": ["https://keys.jku-ehr.example.org/jwks/"]},
    ])


def settings_for(issuers_path: str = "", **changes) -> Settings:
    return Settings(env="test", trusted_issuers=issuers_path, **changes).checked()


@pytest.fixture
def verifier(issuers_file, store):
    return Verifier(settings_for(issuers_file), store)


def reason(verifier: Verifier, authorization: str | None, audience: str = SERVICE) -> str:
    with pytest.raises(Unauthorized) as info:
        verifier.check(authorization, audience)
    assert info.value.reason in REASONS
    return info.value.reason


# -- accepted tokens ------------------------------------------------------------------
def test_es384_token_is_accepted_and_its_claims_returned(verifier, keys):
    payload = claims()
    got = verifier.check(bearer(sign(keys["ec"], payload, kid="ec-1")), SERVICE)
    assert (got.iss, got.aud, got.jti, got.kid, got.tenant) == (EHR, SERVICE, payload["jti"], "ec-1", None)
    assert got.expires_at.timestamp() == payload["exp"] and got.issued_at.timestamp() == payload["iat"]


def test_rs384_token_is_accepted_with_a_jwk_that_names_no_alg(verifier, keys):
    """An RSA JWK without "alg" would default to RS256 in PyJWT; the token's allowed alg is used."""
    got = verifier.check(bearer(sign(keys["rsa"], claims(), "RS384", kid="rsa-1")), SERVICE)
    assert got.kid == "rsa-1"


def test_aud_may_be_a_list_and_a_trailing_slash_is_not_significant(verifier, keys):
    assert verifier.check(bearer(sign(keys["ec"], claims(aud=["https://x.example.org", SERVICE]), kid="ec-1")),
                          SERVICE).aud == SERVICE
    assert verifier.check(bearer(sign(keys["ec"], claims(aud=SERVICE + "/"), kid="ec-1")), SERVICE)


def test_issuer_audiences_and_tenants(verifier, keys):
    got = verifier.check(bearer(sign(keys["ec"], claims(iss=TENANT_EHR, aud=SITE_AUDIENCE, tenant="org-1"),
                                     kid="t-1")), SERVICE)
    assert (got.aud, got.tenant) == (SITE_AUDIENCE, "org-1")


def test_expiry_within_the_clock_skew_is_accepted(verifier, keys):
    now = time.time()
    assert verifier.check(bearer(sign(keys["ec"], claims(iat=int(now) - 330, exp=int(now) - 30), kid="ec-1")),
                          SERVICE)


def test_the_same_jti_from_two_issuers_is_not_a_replay(verifier, keys):
    jti = str(uuid.uuid4())
    verifier.check(bearer(sign(keys["ec"], claims(jti=jti), kid="ec-1")), SERVICE)
    verifier.check(bearer(sign(keys["ec"], claims(iss=OTHER_EHR, jti=jti), kid="ec-1")), SERVICE)


def test_a_jku_header_is_ignored_for_an_issuer_with_configured_keys(verifier, keys):
    token = sign(keys["ec"], claims(), kid="ec-1", jku="https://anywhere.example.org/jwks.json")
    assert verifier.check(bearer(token), SERVICE).kid == "ec-1"


# -- rejected tokens ------------------------------------------------------------------
def crafted(header: dict, payload: dict, sign_with=None) -> str:
    """A compact JWS built by hand, so that PyJWT's own refusals do not stop the attack."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = sign_with(signing_input.encode()) if sign_with else b""
    return f"{signing_input}.{b64(signature)}"


def hs256_with_public_pem(keys):
    pem = keys["rsa"].public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return crafted({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(),
                   lambda data: hmac.new(pem, data, hashlib.sha256).digest())


def tampered(keys):
    head, _, sig = sign(keys["ec"], claims(), kid="ec-1").split(".")
    return f"{head}.{b64(claims(aud=SERVICE, tenant='someone-else'))}.{sig}"



NEGATIVE = {
    "no header": (lambda k: None, "missing"),
    "empty header": (lambda k: "", "missing"),
    "basic scheme": (lambda k: "Basic dXNlcjpwYXNz", "missing"),
    "not a JWT": (lambda k: "Bearer not-a-jwt", "malformed"),
    "garbage segments": (lambda k: "Bearer abc.def.ghi", "malformed"),
    "typ not JWT": (lambda k: bearer(sign(k["ec"], claims(), kid="ec-1", typ="at+jwt")), "typ"),
    "typ absent": (lambda k: bearer(crafted({"alg": "ES384", "kid": "ec-1"}, claims())), "typ"),
    "alg none": (lambda k: bearer(crafted({"alg": "none", "typ": "JWT", "kid": "ec-1"}, claims())), "alg"),
    "HS256 with the public key as secret": (lambda k: bearer(hs256_with_public_pem(k)), "alg"),
    "alg not on the list": (lambda k: bearer(sign(k["p256"], claims(), "ES256", kid="ec-1")), "alg"),
    "alg does not fit the key": (lambda k: bearer(sign(k["rsa"], claims(), "RS384", kid="ec-1")), "alg"),
    "no kid": (lambda k: bearer(sign(k["ec"], claims())), "kid"),
    "unknown kid": (lambda k: bearer(sign(k["ec"], claims(), kid="nobody")), "kid"),
    "untrusted iss": (lambda k: bearer(sign(k["ec"], claims(iss="https://evil.example.org"), kid="ec-1")), "iss"),
    "iss with a trailing slash": (lambda k: bearer(sign(k["ec"], claims(iss=EHR + "/"), kid="ec-1")), "iss"),
    "wrong key": (lambda k: bearer(sign(k["stranger"], claims(), kid="ec-1")), "signature"),
    "tampered payload": (lambda k: bearer(tampered(k)), "signature"),
    "discovery aud on a service call": (lambda k: bearer(sign(k["ec"], claims(aud=DISCOVERY), kid="ec-1")), "aud"),
    "no aud": (lambda k: bearer(sign(k["ec"], claims(aud=None), kid="ec-1")), "aud"),
    "expired": (lambda k: bearer(sign(k["ec"], claims(iat=int(time.time()) - 400, exp=int(time.time()) - 100), kid="ec-1")),
                "expired"),
    "nbf in the future": (lambda k: bearer(sign(k["ec"], claims(nbf=int(time.time()) + 600), kid="ec-1")), "nbf"),
    "iat in the future": (lambda k: bearer(sign(k["ec"], claims(iat=int(time.time()) + 600, exp=int(time.time()) + 900),
                                                kid="ec-1")), "iat"),
    "lifetime too long": (lambda k: bearer(sign(k["ec"], claims(iat=int(time.time()), exp=int(time.time()) + 3601), kid="ec-1")),
                          "lifetime"),
    "exp not a number": (lambda k: bearer(sign(k["ec"], claims(exp="soon"), kid="ec-1")), "malformed"),
    "no jti": (lambda k: bearer(sign(k["ec"], claims(jti=None), kid="ec-1")), "jti"),
    "tenant not allowed": (lambda k: bearer(sign(k["ec"], claims(iss=TENANT_EHR, tenant="org-2"), kid="t-1")),
                           "tenant"),
    "tenant absent where tenants are listed": (lambda k: bearer(sign(k["ec"], claims(iss=TENANT_EHR), kid="t-1")),
                                               "tenant"),
    "jku not allowed": (lambda k: bearer(sign(k["ec"], claims(iss=JKU_EHR), kid="j-1",
                                              jku="https://evil.example.org/jwks/keys.json")), "jku"),
    "jku-only issuer, no jku": (lambda k: bearer(sign(k["ec"], claims(iss=JKU_EHR), kid="j-1")), "jku"),
}


@pytest.mark.parametrize("case", list(NEGATIVE), ids=list(NEGATIVE))
def test_rejections_carry_the_reason(verifier, keys, case):
    build, expected = NEGATIVE[case]
    assert reason(verifier, build(keys)) == expected


def test_a_replayed_token_is_rejected(verifier, keys):
    token = bearer(sign(keys["ec"], claims(), kid="ec-1"))
    verifier.check(token, SERVICE)
    assert reason(verifier, token) == "replay"


def test_replay_is_detected_by_a_second_verifier_sharing_the_store(issuers_file, store, keys):
    """Two worker processes each build a Verifier over the same database."""
    token = bearer(sign(keys["ec"], claims(), kid="ec-1"))
    Verifier(settings_for(issuers_file), store).check(token, SERVICE)
    assert reason(Verifier(settings_for(issuers_file), store), token) == "replay"


def test_a_rejected_token_does_not_use_up_its_jti(verifier, keys):
    """The replay store records only tokens that passed every other check."""
    payload = claims(iss=TENANT_EHR, tenant="org-2")
    assert reason(verifier, bearer(sign(keys["ec"], payload, kid="t-1"))) == "tenant"
    ok = claims(iss=TENANT_EHR, tenant="org-1", jti=payload["jti"])
    assert verifier.check(bearer(sign(keys["ec"], ok, kid="t-1")), SERVICE).jti == payload["jti"]


def test_rejections_are_logged_with_reason_and_iss_never_the_token(verifier, keys, caplog):
    token = sign(keys["ec"], claims(aud=DISCOVERY), kid="ec-1")
    with caplog.at_level(logging.DEBUG, logger="cdshooks"):
        reason(verifier, bearer(token))
    lines = [JsonFormatter().format(r) for r in caplog.records]
    rejected = [json.loads(line) for line in lines if '"auth.rejected"' in line]
    assert rejected and rejected[0]["reason"] == "aud" and rejected[0]["iss"] == EHR
    assert not any(token in line or token.split(".")[2] in line for line in lines)


# -- the public sandbox ---------------------------------------------------------------
def sandbox_private_jwk() -> dict:
    path = SANDBOX_KEYS / "jwk-keypair.json"
    if not path.exists():
        pytest.skip("the sandbox key pair is not in ../shared/reference/sandbox-keys")
    return json.loads(path.read_text())["keys"][0]


def test_a_token_minted_exactly_like_the_sandbox_is_accepted(store):
    jwk = sandbox_private_jwk()
    now = int(time.time())
    token = jwt.encode({"iss": "https://sandbox.cds-hooks.org", "aud": SERVICE, "exp": now + 300, "iat": now,
                        "jti": str(uuid.uuid4())}, jwt.PyJWK(jwk).key, algorithm="ES384",
                       headers={"kid": jwk["kid"], "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"})
    got = Verifier(settings_for(trust_sandbox=True), store).check(bearer(token), SERVICE)
    assert got.iss == "https://sandbox.cds-hooks.org" and got.kid == jwk["kid"]


def test_sandbox_tokens_are_refused_unless_the_sandbox_is_trusted(issuers_file, store):
    token = tokens.mint(SANDBOX_KEYS / "jwk-keypair.json", SERVICE) if (SANDBOX_KEYS / "jwk-keypair.json").exists() \
        else pytest.skip("no sandbox key pair")
    assert reason(Verifier(settings_for(issuers_file), store), bearer(token)) == "iss"


def test_the_shipped_sandbox_key_set_is_the_published_one_and_public_only():
    shipped = issuers.sandbox_jwks()
    assert not any({"d", "p", "q", "k"} & key.keys() for key in shipped["keys"])
    published = SANDBOX_KEYS / "jwks.json"
    if published.exists():
        assert shipped == json.loads(published.read_text())


def test_trusting_the_sandbox_is_refused_in_production():
    with pytest.raises(ConfigError, match="private key is public"):
        Settings(env="production", trust_sandbox=True).checked()


# -- trusted-issuers file -------------------------------------------------------------
def test_no_trusted_issuer_fails_start_up(store):
    with pytest.raises(ConfigError, match="no trusted issuers"):
        Verifier(settings_for(), store)


PRIVATE_JWK = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()), as_dict=True) | {"kid": "p-1"}
BAD_FILES = {
    "not JSON": ("{issuers: [", "not valid JSON"),
    "no issuers list": ({"issuer": []}, 'expected {"issuers"'),
    "no iss": ({"issuers": [{"jwks": {"keys": []}}]}, '"iss" must be'),
    "unknown member": ({"issuers": [{"iss": EHR, "jku": ["https://a.example.org/k/"], "audience": "x"}]},
                       "unknown member(s) audience"),
    "no keys": ({"issuers": [{"iss": EHR}]}, "needs keys"),
    "private key": ({"issuers": [{"iss": EHR, "jwks": {"keys": [PRIVATE_JWK]}}]}, "private key material"),
    "symmetric key": ({"issuers": [{"iss": EHR, "jwks": {"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}}]},
                      "not an asymmetric key type"),
    "jwks_file missing": ({"issuers": [{"iss": EHR, "jwks_file": "nowhere.json"}]}, "cannot read"),
    "jku prefix without a path": ({"issuers": [{"iss": EHR, "jku": ["https://ehr.example.org"]}]},
                                  "must be an https URL with a path"),
    "http jku prefix": ({"issuers": [{"iss": EHR, "jku": ["http://ehr.example.org/keys/"]}]},
                        "must be an https URL"),
    "iss twice": ({"issuers": [{"iss": EHR, "jku": ["https://a.example.org/k/"]},
                               {"iss": EHR, "jku": ["https://b.example.org/k/"]}]}, "issuers[1] (https://ehr.example.org/fhir): this iss is configured twice"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_malformed_issuers_file_fails_start_up_with_a_clear_message(tmp_path, store, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "issuers.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConfigError) as info:
        Verifier(Settings(env="development", trusted_issuers=str(path)), store)
    assert str(path) in str(info.value) and message in str(info.value)


def test_the_sandbox_key_pair_given_as_an_issuer_key_set_is_refused(tmp_path, store):
    """The realistic mistake: pointing jwks_file at the pair instead of the published set."""
    pair = SANDBOX_KEYS / "jwk-keypair.json"
    if not pair.exists():
        pytest.skip("the sandbox key pair is not in ../shared/reference/sandbox-keys")
    path = write_issuers(tmp_path, [{"iss": "https://sandbox.cds-hooks.org", "jwks_file": str(pair)}])
    with pytest.raises(ConfigError, match="holds private key material; configure public keys only"):
        Verifier(settings_for(path), store)


def test_a_short_rsa_key_is_refused(tmp_path, store):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = write_issuers(tmp_path, [{"iss": EHR, "jwks": {"keys": [public_jwk(weak, "weak")]}}])
    with pytest.raises(ConfigError, match="1024 bits"):
        Verifier(settings_for(path), store)


def test_the_sandbox_listed_twice_is_refused(tmp_path, store):
    path = write_issuers(tmp_path, [{"iss": "https://sandbox.cds-hooks.org", "jwks": issuers.sandbox_jwks()}])
    with pytest.raises(ConfigError, match="which CDSHOOKS_TRUST_SANDBOX adds already"):
        Verifier(settings_for(path, trust_sandbox=True), store)


@pytest.mark.parametrize("url, env, ok", [
    ("https://ehr.example.org/keys/a.json", "production", True),
    ("http://ehr.example.org/keys/a.json", "test", False),
    ("http://127.0.0.1:8000/keys/a.json", "test", True),
    ("http://127.0.0.1:8000/keys/a.json", "development", False),
    ("https://user:pw@ehr.example.org/keys/a.json", "production", False),
    ("https://ehr.example.org/keys/../admin", "production", False),
    ("https://ehr.example.org/keys/%2e%2e/admin", "production", False),
    ("https://ehr.example.org/keys/a.json#x", "production", False),
    ("https://ehr.example.org/keys/a.json#", "production", False),
    ("https://ehr.example.org/keys/a.json?x=1", "production", False),
    ("https://ehr.example.org/keys/a.json?", "production", False),
    ("file:///etc/passwd", "test", False),
])
def test_which_key_set_urls_may_be_fetched(url, env, ok):
    assert issuers.fetchable(url, env) is ok


# -- jku: fetching, caching, refreshing (loopback HTTP, allowed only with env=test) ---
class KeyServer:
    """A WSGI app that serves a JWK Set and counts requests per path (served on loopback)."""

    def __init__(self):
        self.jwks: dict = {"keys": []}
        self.status = 200
        self.hits: dict[str, int] = {}
        self.base = ""

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/keys/moved":
            start_response("302 Found", [("Location", "/elsewhere/jwks.json")])
            return [b""]
        start_response(f"{self.status} X", [("Content-Type", "application/json")])
        return [json.dumps(self.jwks).encode()]

    def total(self) -> int:
        return sum(self.hits.values())


@pytest.fixture
def key_server():
    server = KeyServer()
    with serve_wsgi(server) as base:
        server.base = base
        yield server


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def jku_setup(tmp_path, store, key_server, keys):
    clock = Clock()
    path = write_issuers(tmp_path, [{"iss": JKU_EHR, "jku": [f"{key_server.base}/keys/"]}])
    key_server.jwks = {"keys": [public_jwk(keys["ec"], "k1", "ES384")]}
    verifier = Verifier(settings_for(path), store, clock=clock, jwks_ttl=3600, jwks_min_interval=30)

    def token(kid: str, key=None, jku: str | None = None) -> str:
        return bearer(sign(key or keys["ec"], claims(clock.now, iss=JKU_EHR), kid=kid,
                           jku=jku or f"{key_server.base}/keys/jwks.json"))
    return verifier, clock, token


@pytest.mark.parametrize("jku", ["/other/jwks.json", "/keys/../other/jwks.json", "/keys/%2E%2E/other/jwks.json"])
def test_a_jku_outside_the_allowed_prefixes_is_never_fetched(jku_setup, key_server, jku):
    verifier, _, token = jku_setup
    assert reason(verifier, token("k1", jku=key_server.base + jku)) == "jku"
    assert key_server.total() == 0


def test_an_allowed_jku_is_fetched_once_and_cached(jku_setup, key_server):
    verifier, _, token = jku_setup
    assert verifier.check(token("k1"), SERVICE).kid == "k1"
    assert verifier.check(token("k1"), SERVICE).kid == "k1"
    assert key_server.hits == {"/keys/jwks.json": 1}


def test_an_unknown_kid_refreshes_the_set_at_most_once_per_interval(jku_setup, key_server, keys):
    verifier, clock, token = jku_setup
    verifier.check(token("k1"), SERVICE)
    key_server.jwks["keys"].append(public_jwk(keys["rsa"], "k2", "RS384"))
    clock.now += 30
    assert verifier.check(bearer(sign(keys["rsa"], claims(clock.now, iss=JKU_EHR), "RS384", kid="k2",
                                      jku=f"{key_server.base}/keys/jwks.json")), SERVICE).kid == "k2"
    assert key_server.total() == 2                      # rotated key found by a refresh
    assert reason(verifier, token("k3")) == "kid"
    assert reason(verifier, token("k3")) == "kid"
    assert key_server.total() == 2                      # refresh rate-limited: forged kids fetch nothing
    clock.now += 31
    assert reason(verifier, token("k3")) == "kid"
    assert key_server.total() == 3


@pytest.mark.parametrize("suffix", ["?x=1", "?", "#frag", "#"])
def test_a_jku_with_a_query_or_fragment_is_refused(jku_setup, key_server, suffix):
    verifier, _, token = jku_setup
    assert reason(verifier, token("k1", jku=f"{key_server.base}/keys/jwks.json{suffix}")) == "jku"
    assert key_server.total() == 0


def test_forged_tokens_naming_many_jku_urls_fetch_at_most_the_issuers_burst(jku_setup, key_server, keys):
    """40 forged tokens, each naming a new URL under the allowed prefix: the limit is the issuer's,
    not the URL's, so only its burst of 2 fetches goes out, and the key set in use stays cached."""
    verifier, clock, token = jku_setup
    assert verifier.check(token("k1"), SERVICE).kid == "k1"
    reasons = {reason(verifier, token("k1", key=keys["stranger"], jku=f"{key_server.base}/keys/forged-{n}.json"))
               for n in range(40)}
    assert reasons <= {"jwks", "signature"}
    assert key_server.total() == 2                      # the real set, then one forged URL: the burst of 2
    assert verifier.check(token("k1"), SERVICE).kid == "k1"
    assert key_server.total() == 2                      # the set in use was neither evicted nor refetched
    clock.now += 30
    reason(verifier, token("k1", key=keys["stranger"], jku=f"{key_server.base}/keys/forged-late.json"))
    assert key_server.total() == 3                      # one more per interval


def test_the_global_limit_bounds_fetches_across_issuers(tmp_path, store, key_server, keys):
    clock = Clock()
    names = [f"https://ehr-{n}.example.org" for n in range(12)]
    path = write_issuers(tmp_path, [{"iss": iss, "jku": [f"{key_server.base}/keys/{n}/"]} for n, iss in enumerate(names)])
    verifier = Verifier(settings_for(path), store, clock=clock)
    for n, iss in enumerate(names):
        forged = bearer(sign(keys["stranger"], claims(clock.now, iss=iss), kid="k1",
                             jku=f"{key_server.base}/keys/{n}/jwks.json"))
        assert reason(verifier, forged) in {"jwks", "kid"}
    assert key_server.total() == 8                      # the global burst, though no issuer used its own


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_a_key_server_that_drips_is_given_up_on_at_the_fetch_timeout(tmp_path, store, keys, mode):
    with serve_drip(mode) as drip:
        path = write_issuers(tmp_path, [{"iss": JKU_EHR, "jku": [f"{drip.url}/keys/"]}])
        verifier = Verifier(settings_for(path, fetch_timeout=0.5), store)
        forged = bearer(sign(keys["ec"], claims(time.time(), iss=JKU_EHR), kid="k1", jku=f"{drip.url}/keys/jwks.json"))
        started = time.monotonic()
        assert reason(verifier, forged) == "jwks"
        assert time.monotonic() - started < 1.0
        assert len(drip.snapshot()) == 1


def test_cached_keys_survive_a_key_server_outage_after_the_ttl(jku_setup, key_server):
    verifier, clock, token = jku_setup
    verifier.check(token("k1"), SERVICE)
    key_server.status = 500
    clock.now += 3601
    assert verifier.check(token("k1"), SERVICE).kid == "k1"
    assert key_server.total() == 2                      # the stale set was refetched, then kept


def test_an_unreachable_key_set_is_a_jwks_rejection(jku_setup, key_server):
    verifier, _, token = jku_setup
    key_server.status = 500
    assert reason(verifier, token("k1")) == "jwks"


def test_a_key_set_redirect_is_not_followed(jku_setup, key_server):
    verifier, _, token = jku_setup
    assert reason(verifier, token("k1", jku=f"{key_server.base}/keys/moved")) == "jwks"
    assert key_server.hits == {"/keys/moved": 1}


def test_private_or_symmetric_members_of_a_fetched_set_are_ignored(jku_setup, key_server, keys):
    verifier, _, token = jku_setup
    private = ECAlgorithm.to_jwk(keys["stranger"], as_dict=True) | {"kid": "k9"}
    key_server.jwks = {"keys": [private, {"kty": "oct", "kid": "k8", "k": "c2VjcmV0"},
                                public_jwk(keys["ec"], "k1", "ES384")]}
    assert verifier.check(token("k1"), SERVICE).kid == "k1"
    assert reason(verifier, token("k9", key=keys["stranger"])) == "kid"


# -- cdshooks.tokens.mint -------------------------------------------------------------
def write_private_jwk(tmp_path: Path, key, kid: str) -> Path:
    path = tmp_path / f"{kid}.json"
    path.write_text(json.dumps(ECAlgorithm.to_jwk(key, as_dict=True) | {"kid": kid}))
    return path


def test_mint_from_an_ec_jwk_signs_es384_with_its_kid(tmp_path, verifier, keys):
    token = tokens.mint(write_private_jwk(tmp_path, keys["ec"], "ec-1"), SERVICE, issuer=EHR, tenant="org-9",
                        lifetime=120)
    header, payload = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    assert (header["alg"], header["kid"], header["typ"]) == ("ES384", "ec-1", "JWT") and "jku" not in header
    assert payload["exp"] - payload["iat"] == 120 and payload["tenant"] == "org-9"
    assert uuid.UUID(payload["jti"])
    assert verifier.check(bearer(token), SERVICE).iss == EHR


def test_mint_from_an_rsa_pem_signs_rs384_with_the_thumbprint_kid(tmp_path, store, keys):
    pem = tmp_path / "key.pem"
    pem.write_bytes(keys["rsa"].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    token = tokens.mint(pem, SERVICE, issuer=EHR)
    kid = jwt.get_unverified_header(token)["kid"]
    assert jwt.get_unverified_header(token)["alg"] == "RS384"
    path = write_issuers(tmp_path, [{"iss": EHR, "jwks": {"keys": [public_jwk(keys["rsa"], kid)]}}])
    assert Verifier(settings_for(path), store).check(bearer(token), SERVICE).kid == kid


def test_the_thumbprint_is_rfc_7638s():
    """The worked example of RFC 7638 section 3.1."""
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
         "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZ"
         "Hzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU"
         "8awapJzKnqDKgw")
    assert tokens._thumbprint({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}) \
        == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_mint_with_the_sandbox_pair_mints_like_the_sandbox(store):
    path = SANDBOX_KEYS / "jwk-keypair.json"
    if not path.exists():
        pytest.skip("the sandbox key pair is not in ../shared/reference/sandbox-keys")
    token = tokens.mint(path, SERVICE)
    header, payload = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    assert header == {"alg": "ES384", "typ": "JWT", "kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
                      "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"}
    assert payload["iss"] == "https://sandbox.cds-hooks.org" and payload["exp"] - payload["iat"] == 300
    assert Verifier(settings_for(trust_sandbox=True), store).check(bearer(token), SERVICE)


def test_mint_refuses_unusable_input(tmp_path, keys):
    ec_file = write_private_jwk(tmp_path, keys["ec"], "ec-1")
    with pytest.raises(ValueError, match="issuer"):
        tokens.mint(ec_file, SERVICE)
    with pytest.raises(ValueError, match="lifetime"):
        tokens.mint(ec_file, SERVICE, issuer=EHR, lifetime=0)
    with pytest.raises(ValueError, match="P-384"):
        tokens.mint(write_private_jwk(tmp_path, keys["p256"], "p256"), SERVICE, issuer=EHR)
    public = tmp_path / "public.json"
    public.write_text(json.dumps(public_jwk(keys["ec"], "ec-1")))
    with pytest.raises(ValueError, match="public key"):
        tokens.mint(public, SERVICE, issuer=EHR)
    both = tmp_path / "set.json"
    both.write_text(json.dumps({"keys": [json.loads(ec_file.read_text()),
                                         ECAlgorithm.to_jwk(keys["stranger"], as_dict=True) | {"kid": "s"}]}))
    with pytest.raises(ValueError, match="choose one"):
        tokens.mint(both, SERVICE, issuer=EHR)
    assert jwt.get_unverified_header(tokens.mint(both, SERVICE, issuer=EHR, kid="s"))["kid"] == "s"
