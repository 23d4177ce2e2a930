"""The fallback path end to end: a hook call with no prefetch whose fhirServer is the fixtures
FHIR endpoint (served over real HTTP on loopback) answers the same cards as with full prefetch."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdshooks import create_app
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.tryit.fixtures import for_scenario, scenarios

from ..conftest import CheckedClient, make_settings
from ..fault_fhir import create_app as fhir_app
from ..loopback import serve_wsgi

SCENARIOS = scenarios()
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _shape(cards: list[dict]) -> list[tuple]:
    """What a clinician sees of each card, without the per-call uuids."""
    out = []
    for c in cards:
        suggestions = tuple(sorted(
            (s["label"], tuple(sorted(a["type"] for a in s.get("actions", [])))) for s in c.get("suggestions", [])))
        out.append((c["source"]["topic"]["code"], c["indicator"], c["summary"], suggestions))
    return sorted(out)


@pytest.fixture(scope="module")
def fhir_base():
    with serve_wsgi(fhir_app(clock=lambda: NOW)) as base:
        yield base


@pytest.fixture(scope="module")
def service(tmp_path_factory, fhir_base):
    app = create_app(make_settings(tmp_path_factory.mktemp("parity"), fhir_servers=(fhir_base,), call_budget=10.0,
                                   fetch_timeout=5.0))
    yield app, CheckedClient(app)
    app.extensions["cdshooks"].store.dispose()


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fallback_answers_the_same_cards_as_prefetch(service, fhir_base, sc):
    app, client = service
    service_id = SERVICE_IDS[sc.hook]
    templates = app.extensions["cdshooks"].engine.services[service_id].prefetch
    with_prefetch = for_scenario(sc, templates, now=NOW)
    fallback = for_scenario(sc, templates, now=NOW, prefetch=False, fhir_server=f"{fhir_base}/fhir")
    assert "prefetch" not in fallback
    first = client.hook(service_id, with_prefetch)
    second = client.hook(service_id, fallback)
    assert first.status_code == second.status_code == 200, second.get_data(as_text=True)
    assert _shape(second.get_json()["cards"]) == _shape(first.get_json()["cards"])
