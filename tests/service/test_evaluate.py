"""``Engine.evaluate``: one patient's resources as of an instant, no HTTP, the same cards as the hook call.

Every fixture scenario is answered twice, over HTTP with the prefetch a client sends and by
``evaluate`` on the patient's resources: the cards are the same (uuids aside).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdshooks.fhir.bundles import patients
from cdshooks.service.engine import SERVICE_IDS, Engine, Outcome
from cdshooks.tryit.fixtures import for_scenario, scenarios

from ..conftest import make_settings

SCENARIOS = scenarios()
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _stable(cards: list[dict]) -> list[dict]:
    """Cards without the uuids stamped per call."""
    out = []
    for card in cards:
        card = {k: v for k, v in card.items() if k != "uuid"}
        card["suggestions"] = [{k: v for k, v in s.items() if k != "uuid"} for s in card.get("suggestions", [])]
        out.append(card)
    return out


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_evaluate_gives_the_hook_calls_cards(app, client, sc):
    engine: Engine = app.extensions["cdshooks"].engine
    service_id = SERVICE_IDS[sc.hook]
    resp = client.hook(service_id, for_scenario(sc, engine.services[service_id].prefetch, now=NOW))
    assert resp.status_code == 200
    resources = patients(sc.bundle(NOW))[sc.patient]
    outcome = engine.evaluate(sc.hook, resources, NOW, patient_id=sc.patient, selections=sc.selections)
    assert isinstance(outcome, Outcome) and outcome.failed == []
    assert _stable(outcome.cards) == _stable(resp.get_json()["cards"])
    assert set(sc.fires) <= {c["source"]["topic"]["code"] for c in outcome.cards}


def test_evaluate_takes_the_as_of_instant(app):
    """Dates are judged against ``now``: the same labs are recent at one instant and stale a year later."""
    engine: Engine = app.extensions["cdshooks"].engine
    sc = next(s for s in SCENARIOS if s.name == "demo-twitching-weakness")
    resources = patients(sc.bundle(NOW))[sc.patient]
    today = {c["source"]["topic"]["code"] for c in engine.evaluate(sc.hook, resources, NOW).cards}
    later = {c["source"]["topic"]["code"] for c in engine.evaluate(
        sc.hook, resources, NOW.replace(year=NOW.year + 2)).cards}
    assert today != later


def test_a_rule_that_raises_is_reported_not_fatal(tmp_path, monkeypatch):
    from cdshooks.cards import registry

    engine = Engine(make_settings(tmp_path, strict_rules=False), None)
    sc = next(s for s in SCENARIOS if s.hook == "patient-view" and s.fires)
    # a rule that fires in this scenario (rules whose triggers are absent are not even run)
    victim = next(r for r in engine.services[SERVICE_IDS["patient-view"]].rules if r.id in sc.fires)

    original = registry.Rule.run

    def run(self, call):
        if self.id == victim.id:
            raise TypeError("bad data")
        return original(self, call)

    monkeypatch.setattr(registry.Rule, "run", run)
    outcome = engine.evaluate("patient-view", patients(sc.bundle(NOW))[sc.patient], NOW)
    assert outcome.failed == [victim.id]


def test_evaluate_without_a_patient_is_a_value_error(app):
    engine: Engine = app.extensions["cdshooks"].engine
    with pytest.raises(ValueError):
        engine.evaluate("patient-view", [{"resourceType": "Condition", "id": "c"}], NOW)
