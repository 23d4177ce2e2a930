"""Settings: every knob comes from a ``CDSHOOKS_*`` environment variable (README table).

``Settings.from_env()`` reads the environment once at start-up; tests build
``Settings(...)`` directly or with ``Settings.from_env(overrides)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

__all__ = ["Settings", "RuleSettings", "ConfigError"]


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _https_url(value: str) -> bool:
    parts = urlsplit(value.strip())
    return parts.scheme == "https" and bool(parts.hostname) and not parts.username and not parts.query


@dataclass(frozen=True)
class RuleSettings:
    """Clinical windows and limits, with the catalogue's defaults."""

    lab_recent_days: int = 90          # a lab counts as recent
    study_window_days: int = 365       # EMG, nerve conduction, MRI, ABI, LGI1 test already done/ordered
    antibody_result_days: int = 365    # an LGI1 antibody result recent enough to start treatment
    referral_window_days: int = 90     # a referral already made
    persistent_days: int = 28          # persistent twitching: onset at least this long ago
    repeat_lab_after_days: int = 7     # electrolyte-abnormal suggests a repeat panel only past this
    albumin_pair_days: int = 7         # albumin used for calcium correction within this of the calcium
    baclofen_step_days: int = 7        # baclofen titration: last change at least this long ago
    disabled: tuple[str, ...] = ()     # rule ids switched off

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "RuleSettings":
        kwargs: dict = {}
        for f in fields(cls):
            key = "CDSHOOKS_RULES_" + f.name.upper()
            if key in env:
                kwargs[f.name] = _list(env[key]) if f.name == "disabled" else int(env[key])
        return cls(**kwargs)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""                       # externally visible base URL, e.g. https://cds.example.org
    database_url: str = ""                     # default: sqlite file in the instance folder
    db_migrate: bool = True                    # start-up runs the migrations (else checks the schema is at head)
    db_connect_timeout: float = 3.0            # seconds to wait for a database connection
    issued_retention_days: int = 365           # issued-card records kept this long (0: forever)
    replay_purge_seconds: int = 60             # expired replay-cache entries deleted this often
    issued_queue_size: int = 10000             # issued-card records waiting to be written (0: written in the call)
    instance_path: str = ""                    # default: ./instance
    env: str = "development"                   # or "production"
    fhir_servers: tuple[str, ...] = ()         # base URLs the service may call back
    fetch_timeout: float = 1.5                 # seconds, one FHIR request
    call_budget: float = 2.0                   # seconds, a whole hook call including fetches
    fetch_page_cap: int = 5                    # next pages followed per prefetch key
    fetch_max_bytes: int = 8 * 1024 * 1024     # largest FHIR response accepted
    fetch_per_server: int = 8                  # concurrent requests to one FHIR server, per worker process
    fhir_allow_http: bool = False              # plain http to listed non-loopback servers (compose demo only)
    fhir_routes: tuple[str, ...] = ()          # "public=internal" base URLs: where to reach a fhirServer
    cors_origins: tuple[str, ...] = ("*",)
    log_level: str = "INFO"
    max_body_bytes: int = 16 * 1024 * 1024     # largest request body accepted (413 past it)
    max_json_depth: int = 100                  # deepest nesting of arrays and objects in a request body (400 past it)
    max_feedback_items: int = 100              # feedback items in one request (413 past it)
    max_draft_orders: int = 200                # draft order resources in one order-select/order-sign call (413)
    request_deadline: float = 10.0             # seconds a request may take, body read included (503 past it)
    client_timeout: float = 10.0               # seconds a client has to send a whole request (408 past it)
    auth: str = "required"                     # "required" or "off"
    trusted_issuers: str = ""                  # path of the trusted-issuers JSON file
    trust_sandbox: bool = False                # trust the public CDS Hooks sandbox (testing only)
    jwt_algorithms: tuple[str, ...] = ("ES384", "RS384")
    jwt_clock_skew: int = 60                   # seconds
    jwt_max_lifetime: int = 3600               # seconds between iat and exp
    fixtures_dir: str = ""                     # extra folder of FHIR Bundles for /fhir and the playground
    strict_rules: bool = False                 # re-raise rule exceptions (tests)
    rule_failure_card: bool = True             # an info card when a rule could not be completed
    rules: RuleSettings = field(default_factory=RuleSettings)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        kwargs: dict = {}
        conv: dict[str, Callable[[str], object]] = {
            "port": int, "fetch_timeout": float, "call_budget": float, "fetch_page_cap": int,
            "fetch_max_bytes": int, "max_body_bytes": int, "jwt_clock_skew": int, "jwt_max_lifetime": int,
            "max_json_depth": int, "max_feedback_items": int, "max_draft_orders": int, "request_deadline": float,
            "client_timeout": float,
            "trust_sandbox": _bool, "strict_rules": _bool, "rule_failure_card": _bool, "fhir_allow_http": _bool,
            "fetch_per_server": int,
            "db_migrate": _bool, "db_connect_timeout": float, "issued_retention_days": int,
            "replay_purge_seconds": int, "issued_queue_size": int,
            "fhir_servers": _list, "cors_origins": _list, "jwt_algorithms": _list, "fhir_routes": _list,
        }
        for f in fields(cls):
            if f.name == "rules":
                continue
            key = "CDSHOOKS_" + f.name.upper()
            if key in env:
                try:
                    kwargs[f.name] = conv.get(f.name, str)(env[key])
                except ValueError as exc:
                    raise ConfigError(f"{key}: {exc}") from None
        kwargs["rules"] = RuleSettings.from_env(env)
        kwargs.update(overrides)
        return cls(**kwargs).checked()

    def checked(self) -> "Settings":
        if self.env not in {"development", "production", "test"}:
            raise ConfigError("CDSHOOKS_ENV must be development, production or test")
        if self.auth not in {"required", "off"}:
            raise ConfigError("CDSHOOKS_AUTH must be 'required' or 'off'")
        if self.production and self.trust_sandbox:
            raise ConfigError("CDSHOOKS_TRUST_SANDBOX cannot be used with CDSHOOKS_ENV=production: "
                              "the sandbox's private key is public")
        if self.production and self.auth == "off":
            raise ConfigError("CDSHOOKS_AUTH=off cannot be used with CDSHOOKS_ENV=production: "
                              "every caller would be trusted")
        if self.production and self.fhir_allow_http:
            raise ConfigError("CDSHOOKS_FHIR_ALLOW_HTTP cannot be used with CDSHOOKS_ENV=production")
        if self.production:
            self._check_production_urls()
        bad = [a for a in self.jwt_algorithms if a.upper() == "NONE" or a.upper().startswith("HS")]
        if bad:
            raise ConfigError(f"CDSHOOKS_JWT_ALGORITHMS may not allow {', '.join(bad)}")
        for route in self.fhir_routes:
            public, sep, internal = route.partition("=")
            if not sep or urlsplit(public).scheme not in ("http", "https") \
                    or urlsplit(internal).scheme not in ("http", "https"):
                raise ConfigError(f"CDSHOOKS_FHIR_ROUTES: {route!r} is not PUBLIC_BASE_URL=INTERNAL_BASE_URL")
            if self.production and not _https_url(internal):
                raise ConfigError(f"CDSHOOKS_FHIR_ROUTES must lead to https URLs in production: {route!r}")
        if min(self.call_budget, self.fetch_timeout, self.request_deadline, self.client_timeout) <= 0:
            raise ConfigError("time budgets must be positive")
        if self.fetch_per_server < 1:
            raise ConfigError("CDSHOOKS_FETCH_PER_SERVER must be at least 1")
        if min(self.max_body_bytes, self.max_json_depth, self.max_feedback_items, self.max_draft_orders) < 1:
            raise ConfigError("request limits must be positive")
        if self.issued_retention_days < 0 or self.issued_queue_size < 0 or self.replay_purge_seconds < 1:
            raise ConfigError("CDSHOOKS_ISSUED_RETENTION_DAYS and CDSHOOKS_ISSUED_QUEUE_SIZE must be 0 or more, "
                              "CDSHOOKS_REPLAY_PURGE_SECONDS at least 1")
        return self

    def _check_production_urls(self) -> None:
        """Production needs the public https URL (the JWT ``aud``) and an https allowlist of FHIR servers."""
        if not _https_url(self.public_url):
            raise ConfigError("CDSHOOKS_ENV=production requires CDSHOOKS_PUBLIC_URL, the https URL clients call "
                              "(e.g. https://cds.example.org): it is the JWT audience")
        if not self.fhir_servers:
            raise ConfigError("CDSHOOKS_ENV=production requires CDSHOOKS_FHIR_SERVERS, the https fhirServer base "
                              "URLs the service may call back")
        plain = [u for u in self.fhir_servers if not _https_url(u)]
        if plain:
            raise ConfigError(f"CDSHOOKS_FHIR_SERVERS must be https URLs in production: {', '.join(plain)}")

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes).checked()

    def instance_dir(self) -> Path:
        return Path(self.instance_path or "instance").resolve()

    def store_options(self) -> dict:
        """Keyword arguments of ``store.Store`` from these settings."""
        return {"issued_retention_days": self.issued_retention_days, "replay_purge_seconds": self.replay_purge_seconds,
                "queue_size": self.issued_queue_size, "connect_timeout": self.db_connect_timeout,
                "migrate_on_init": self.db_migrate}

    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.instance_dir() / 'cdshooks.sqlite'}"
