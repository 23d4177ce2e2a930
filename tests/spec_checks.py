"""The CDS Hooks 2.0 response rules, as assertions every test response goes through."""

from __future__ import annotations

from cdshooks.fhir.models import validation_errors
from cdshooks.service.validation import validator


def _empty_values(value, path="$"):
    if value is None or value == "" or value == [] or value == {}:
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _empty_values(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _empty_values(v, f"{path}[{i}]")


def check_response(body: dict) -> None:
    """Schema, no empty values, and the spec's card rules; suggested resources valid FHIR R4."""
    errors = sorted(validator("hook-response").iter_errors(body), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    empties = [p for p in _empty_values({k: v for k, v in body.items() if k != "cards"}) if p != "$"]
    for i, card in enumerate(body["cards"]):
        empties += list(_empty_values(card, f"$.cards[{i}]"))
    assert not empties, f"empty values in response: {empties}"
    seen_uuids = set()
    for card in body["cards"]:
        assert len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card.get("uuid"), "every card carries a uuid"
        assert card["uuid"] not in seen_uuids
        seen_uuids.add(card["uuid"])
        topic = card["source"].get("topic")
        assert topic and topic["code"] and topic["system"], "source.topic names the rule"
        assert card.get("detail"), "every card explains itself"
        for reason in card.get("overrideReasons", []):
            assert reason.get("display")
        if card.get("suggestions"):
            assert card.get("selectionBehavior") in ("any", "at-most-one")
            if card["selectionBehavior"] == "at-most-one":
                assert sum(1 for s in card["suggestions"] if s.get("isRecommended")) <= 1
        for s in card.get("suggestions", []):
            assert s.get("uuid") and s["uuid"] not in seen_uuids
            seen_uuids.add(s["uuid"])
            for action in s.get("actions", []):
                assert action.get("description")
                if action["type"] in ("create", "update"):
                    problems = validation_errors(action["resource"])
                    assert not problems, f"suggested {action['resource'].get('resourceType')} invalid: {problems}"
        for link in card.get("links", []):
            if link["type"] != "smart":
                assert "appContext" not in link
