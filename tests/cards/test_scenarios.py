"""Every scenario in fhir_fixtures/index.json through the HTTP endpoint, with full prefetch.

For each scenario: the rules in ``fires`` produce a card and those in ``silent`` do not; for the
rules in ``expect``, the card's indicator, the codes its suggested resources carry (and do not
carry), and the facts its detail names. Every response also passes the spec checks.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdshooks.cards import registry as rules
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.tryit.fixtures import for_scenario, scenarios

SCENARIOS = scenarios()
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def suggested_codes(card: dict) -> set[str]:
    codes: set[str] = set()
    for s in card.get("suggestions", []):
        for action in s.get("actions", []):
            res = action.get("resource") or {}
            for field in ("code", "medicationCodeableConcept"):
                for coding in (res.get(field) or {}).get("coding", []):
                    codes.add(coding.get("code"))
            if action["type"] == "delete":
                codes.add(action["resourceId"])
    return codes


def answer(app, client, sc) -> list[dict]:
    service_id = SERVICE_IDS[sc.hook]
    templates = app.extensions["cdshooks"].engine.services[service_id].prefetch
    body = for_scenario(sc, templates, now=NOW)
    resp = client.hook(service_id, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["cards"]


def test_the_index_names_known_rules():
    known = set(rules.load())
    for sc in SCENARIOS:
        unknown = (set(sc.fires) | set(sc.silent) | set(sc.expect)) - known
        assert not unknown, f"{sc.name}: unknown rule ids {unknown}"
        assert not set(sc.fires) & set(sc.silent), sc.name


def test_every_rule_has_a_firing_and_a_silent_scenario():
    fires = {r for sc in SCENARIOS for r in sc.fires}
    silent = {r for sc in SCENARIOS for r in sc.silent}
    for rule in rules.all_rules():
        assert rule.id in fires, f"no scenario where {rule.id} fires"
        assert rule.id in silent, f"no near-miss scenario where {rule.id} stays silent"


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(app, client, sc):
    cards = answer(app, client, sc)
    by_rule: dict[str, list[dict]] = {}
    for card in cards:
        by_rule.setdefault(card["source"]["topic"]["code"], []).append(card)
    fired = set(by_rule)
    assert set(sc.fires) <= fired, f"expected to fire: {sorted(set(sc.fires) - fired)}; fired: {sorted(fired)}"
    assert not set(sc.silent) & fired, f"expected silent but fired: {sorted(set(sc.silent) & fired)}"
    for rule_id, exp in sc.expect.items():
        assert rule_id in by_rule, f"{rule_id} did not fire"
        card = by_rule[rule_id][0]
        if "indicator" in exp:
            assert card["indicator"] == exp["indicator"], rule_id
        codes = suggested_codes(card)
        for code in exp.get("codes", []):
            assert code in codes, f"{rule_id}: suggestion with code {code} missing; has {sorted(codes)}"
        for code in exp.get("absent_codes", []):
            assert code not in codes, f"{rule_id}: must not suggest {code}"
        for fact in exp.get("detail", []):
            assert fact in card["detail"], f"{rule_id}: detail does not name {fact!r}:\n{card['detail']}"
        for fact in exp.get("summary", []):
            assert fact in card["summary"], f"{rule_id}: summary does not name {fact!r}"


def test_one_call_never_suggests_the_same_order_twice(app, client):
    from cdshooks.cards.orders import covers, order_key

    for sc in SCENARIOS:
        seen: set = set()
        created: list[dict] = []
        for card in answer(app, client, sc):
            for s in card.get("suggestions", []):
                for a in s.get("actions", []):
                    if a["type"] == "create":
                        key = order_key(a["resource"])
                        assert key not in seen, f"{sc.name}: {key} suggested twice"
                        seen.add(key)
                        created.append(a["resource"])
        for one in created:
            for other in created:
                assert not covers(one, other), f"{sc.name}: {order_key(other)} is inside {order_key(one)}"



def test_every_suggested_order_is_coded_and_every_medication_order_is_dosed(app, client):
    for sc in SCENARIOS:
        for card in answer(app, client, sc):
            for s in card.get("suggestions", []):
                for a in s.get("actions", []):
                    res = a.get("resource")
                    if a["type"] == "delete" or res is None:
                        continue
                    if a["type"] == "update" and res["resourceType"] != "MedicationRequest":
                        continue  # the clinician's own draft with a note added: its code is theirs
                    concept = res.get("code") or res.get("medicationCodeableConcept") or {}
                    assert concept.get("coding"), f"{sc.name}: {card['source']['topic']['code']} suggests an uncoded order"
                    if res["resourceType"] == "MedicationRequest" and res.get("status") != "stopped":
                        dosage = res["dosageInstruction"][0]
                        assert dosage["doseAndRate"][0]["doseQuantity"]["value"] > 0, sc.name
                        assert dosage["timing"]["repeat"]["frequency"] >= 1, sc.name
                        assert dosage.get("route", {}).get("coding"), f"{sc.name}: no route"
