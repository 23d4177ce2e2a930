"""Shared test fixtures: an app on a real SQLite file, a client, and a checker that every
hook response the suite produces is valid CDS Hooks 2.0 (schema + the spec's card rules)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from cdshooks import create_app
from cdshooks.config import Settings

from . import postgres
from .probe_rules import probe_rules  # noqa: F401 - fixture for the CLI, playground and browser tests
from .spec_checks import check_response

# Property-based tests run the same examples on every run (derandomized), keep no example database
# (nothing written under .hypothesis/), and have no per-example deadline (the machine is shared).
hypothesis_settings.register_profile("cdshooks", derandomize=True, database=None, deadline=None,
                                     print_blob=True)
hypothesis_settings.load_profile("cdshooks")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def production_issuers(tmp_path: Path) -> str:
    """A trusted-issuers file (public keys only) for production settings, which require authentication."""
    import json

    from cdshooks.trust import issuers

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [{"iss": "https://ehr.example.org", "jwks": issuers.sandbox_jwks()}]}))
    return str(path)


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Test settings; ``env="production"`` brings what production requires with it: authentication and
    a trusted-issuers file, the public https URL and an https allowlist."""
    if overrides.get("env") == "production":
        overrides.setdefault("auth", "required")
        overrides.setdefault("trusted_issuers", production_issuers(tmp_path))
        overrides.setdefault("public_url", "https://cds.example.org")
        overrides.setdefault("fhir_servers", ("https://fhir.example.org/r4",))
    base = dict(
        env="test",
        auth="off",
        strict_rules=True,
        instance_path=str(tmp_path / "instance"),
        database_url=f"sqlite:///{tmp_path / 'cdshooks-test.sqlite'}",
        fhir_servers=("http://127.0.0.1",),
        log_level="DEBUG",
    )
    base.update(overrides)
    return Settings(**base).checked()


class CheckedClient:
    """A Flask test client whose hook responses are checked against the spec on every call."""

    def __init__(self, app):
        self.app = app
        self.raw = app.test_client()

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def hook(self, service_id: str, body: dict, **kwargs):
        """The answer, read whole and closed as a server closes it once sent (the call's log lines and
        metrics are made then)."""
        resp = self.raw.post(f"/cds-services/{service_id}", json=body, **kwargs)
        resp.get_data()
        resp.close()
        if resp.status_code == 200:
            check_response(resp.get_json())
        return resp


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster on loopback for the session; skips when one cannot be started."""
    try:
        cluster = postgres.start()
    except RuntimeError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    yield cluster
    cluster.remove()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database: an SQLite file, then a database in the throwaway PostgreSQL cluster."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    cluster = request.getfixturevalue("pg_cluster")
    name = cluster.create_database()
    yield cluster.url(name)
    cluster.drop_database(name)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.config["PROPAGATE_UNEXPECTED"] = True
    yield app
    app.extensions["cdshooks"].store.dispose()


@pytest.fixture
def client(app):
    return CheckedClient(app)


def hook_request(hook: str, patient_id: str = "p1", prefetch: dict | None = None, **extra) -> dict:
    context = {"userId": "Practitioner/example", "patientId": patient_id}
    if hook == "order-select":
        draft = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
                 "subject": {"reference": f"Patient/{patient_id}"},
                 "medicationCodeableConcept": {"text": "acetaminophen 500 mg oral tablet"}}
        context.update(selections=extra.pop("selections", ["MedicationRequest/draft-1"]),
                       draftOrders=extra.pop("draftOrders", {"resourceType": "Bundle", "entry": [{"resource": draft}]}))
    elif hook == "order-sign":
        context.update(draftOrders=extra.pop("draftOrders", {"resourceType": "Bundle"}))
    context.update(extra.pop("context", {}))
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def empty_prefetch(app, hook: str) -> dict:
    """A prefetch that satisfies every template of the hook's service with 'no data' (null)."""
    engine = app.extensions["cdshooks"].engine
    service = engine.services[f"fasciculation-{hook}"]
    return {key: None for key in service.prefetch}
