"""Rules that cannot fire are skipped, and skipping never changes an answer.

The engine skips a rule whose ``triggers`` (value sets no Condition or Observation of the record
is coded in) are absent. Every fixture scenario, and variants of it with its Conditions or its
Observations left out, is answered with skipping on and off: the cards must be the same.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from cdshooks.cards import registry
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.tryit.fixtures import for_scenario, scenarios

from ..conftest import hook_request

SCENARIOS = scenarios()
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _without(body: dict, resource_type: str | None) -> dict:
    """The request with every ``resource_type`` entry left out of its prefetch searchsets."""
    body = copy.deepcopy(body)
    if resource_type is None:
        return body
    for value in (body.get("prefetch") or {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            value["entry"] = [e for e in value.get("entry") or []
                              if (e.get("resource") or {}).get("resourceType") != resource_type]
    return body


def _cards(engine, service_id: str, body: dict, skip: bool) -> list[dict]:
    engine.skip_untriggered = skip
    try:
        cards = engine.answer(service_id, copy.deepcopy(body), now=NOW)["cards"]
    finally:
        engine.skip_untriggered = True
    for card in cards:  # uuids are stamped per call
        card.pop("uuid", None)
        for s in card.get("suggestions", []):
            s.pop("uuid", None)
    return cards


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_skipping_untriggered_rules_gives_the_same_cards(app, sc):
    engine = app.extensions["cdshooks"].engine
    service_id = SERVICE_IDS[sc.hook]
    full = for_scenario(sc, engine.services[service_id].prefetch, now=NOW)
    for left_out in (None, "Condition", "Observation"):
        body = _without(full, left_out)
        assert _cards(engine, service_id, body, skip=True) == _cards(engine, service_id, body, skip=False), \
            f"{sc.name} without {left_out}"


def test_the_scenarios_exercise_both_sides_of_every_trigger(app):
    """Each rule with triggers is skipped in some scenario and runs (and fires) in another."""
    engine = app.extensions["cdshooks"].engine
    skipped: set[str] = set()
    ran: set[str] = set()
    for sc in SCENARIOS:
        service = engine.services[SERVICE_IDS[sc.hook]]
        body = for_scenario(sc, service.prefetch, now=NOW)
        from cdshooks.fhir.record import Record

        record = Record.from_prefetch(body["context"]["patientId"], body["prefetch"].values(), NOW)
        for rule in service.rules:
            if rule.triggers:
                (ran if rule.triggered(record) else skipped).add(rule.id)
    with_triggers = {r.id for r in registry.all_rules() if r.triggers}
    assert len(with_triggers) >= 10
    assert with_triggers <= skipped
    assert with_triggers <= ran


def test_an_untriggered_rule_is_not_called(app, monkeypatch):
    """A record with no twitching, cramps or other findings runs only the rules without triggers."""
    engine = app.extensions["cdshooks"].engine
    called: list[str] = []
    original = registry.Rule.run

    def spy(self, call):
        called.append(self.id)
        return original(self, call)

    monkeypatch.setattr(registry.Rule, "run", spy)
    service = engine.services[SERVICE_IDS["patient-view"]]
    prefetch = {key: {"resourceType": "Bundle", "type": "searchset", "entry": []} for key in service.prefetch}
    engine.answer(service.id, hook_request("patient-view", prefetch=prefetch), now=NOW)
    assert called == [r.id for r in service.rules if not r.triggers]
    called.clear()
    engine.skip_untriggered = False
    try:
        engine.answer(service.id, hook_request("patient-view", prefetch=prefetch), now=NOW)
    finally:
        engine.skip_untriggered = True
    assert called == [r.id for r in service.rules]


def test_unknown_or_empty_trigger_groups_fail_start_up(monkeypatch):
    rule = registry.load()["emg-evaluation"]
    for triggers in ((("no_such_valueset",),), ((),)):
        monkeypatch.setitem(registry._REGISTRY, rule.id, registry.Rule(**{**rule.__dict__, "triggers": triggers}))
        with pytest.raises((ValueError, KeyError)):
            registry.load()
