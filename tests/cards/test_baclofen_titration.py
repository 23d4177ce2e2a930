"""baclofen-titration: the weekly step, its ceiling, and when the dose or date is not known."""

from __future__ import annotations

import pytest

from cdshooks.cards._baclofen import regimen

from .fhir_builders import ago, cirrhosis, cramp, med, mg, run, rx, tablets, text, twitch, valid

TABLET_10 = rx("197391", "baclofen 10 MG Oral Tablet")


def _replace(card):
    """The one suggestion: stop the current order(s) and create the new one."""
    [suggestion] = card.suggestions
    stops = [a.resource for a in suggestion.actions if a.type == "update"]
    [create] = [a.resource for a in suggestion.actions if a.type == "create"]
    return stops, create


def test_one_step_up_replaces_the_current_order_and_keeps_a_once_daily_schedule():
    current = med("bac", TABLET_10, dose=tablets(1), per_day=1, days_ago=8)
    [card] = run("baclofen-titration", cirrhosis(), cramp(), current)
    assert card.indicator == "info" and valid(card)
    stops, order = _replace(card)
    assert [(s["id"], s["status"]) for s in stops] == [("bac", "stopped")]  # no second active baclofen
    assert current["status"] == "active"  # the record is untouched
    dosage = order["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 20
    assert dosage["timing"]["repeat"]["frequency"] == 1
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "197392"  # 20 mg once daily: one tablet
    assert order["priorPrescription"]["reference"] == "MedicationRequest/bac"
    assert "Baclofen 10 mg/day" in card.detail and "raise to 20 mg/day" in card.summary


def test_a_statement_cannot_be_stopped_by_the_card_so_the_card_says_so():
    current = med("st", text("baclofen"), dose=mg(10), per_day=1, days_ago=20, kind="MedicationStatement")
    [card] = run("baclofen-titration", cirrhosis(), cramp(), current)
    stops, order = _replace(card)
    assert stops == [] and "Stop the recorded baclofen when the new order starts" in card.detail


def test_the_step_never_passes_30_mg_a_day_and_never_needs_half_tablets():
    current = med("bac", text("baclofen 12.5 mg"), dose=mg(12.5), per_day=2, days_ago=8)  # 25 mg/day
    [card] = run("baclofen-titration", cirrhosis(), cramp(), current)
    dosage = _replace(card)[1]["dosageInstruction"][0]
    assert (dosage["doseAndRate"][0]["doseQuantity"]["value"], dosage["timing"]["repeat"]["frequency"]) == (10, 3)
    assert run("baclofen-titration", cirrhosis(), cramp(), med("bac", TABLET_10, dose=mg(10), per_day=3,
                                                                days_ago=30)) == []
    odd = med("bac", text("baclofen 5 mg"), dose=mg(5), per_day=1, days_ago=8)  # 15 mg/day has no whole-tablet plan
    [card] = run("baclofen-titration", cirrhosis(), cramp(), odd)
    assert card.suggestions == [] and "in whole tablets" in card.detail


@pytest.mark.parametrize("current", [
    med("bac", text("baclofen 10 mg daily"), days_ago=30),                         # text only
    med("bac", TABLET_10, dose={"value": 1, "unit": "puff"}, per_day=1, days_ago=30),  # unknown unit
])
def test_no_card_when_the_dose_cannot_be_computed(current):
    assert run("baclofen-titration", cirrhosis(), cramp(), current) == []


def test_two_records_of_one_regimen_count_once_but_different_doses_are_unknown():
    request = med("bac", TABLET_10, dose=mg(10), per_day=1, days_ago=20)
    same = med("st", text("baclofen"), dose=mg(10), per_day=1, days_ago=20, kind="MedicationStatement")
    other = med("st", text("baclofen"), dose=mg(5), per_day=1, days_ago=20, kind="MedicationStatement")
    assert run("baclofen-titration", cirrhosis(), cramp(), request, same)
    assert run("baclofen-titration", cirrhosis(), cramp(), request, other) == []


def test_the_last_change_must_be_a_step_ago():
    recent = med("bac", TABLET_10, dose=mg(10), per_day=1, days_ago=5)
    assert run("baclofen-titration", cirrhosis(), cramp(), recent) == []
    assert run("baclofen-titration", cirrhosis(), cramp(), recent, baclofen_step_days=4)
    changed = med("bac", TABLET_10, dose=mg(10), per_day=1, days_ago=30)
    changed["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] = {"start": ago(3)}
    assert run("baclofen-titration", cirrhosis(), cramp(), changed) == []
    undated = med("bac", TABLET_10, dose=mg(10), per_day=1)
    del undated["authoredOn"]
    assert run("baclofen-titration", cirrhosis(), cramp(), undated) == []


def test_needs_cirrhosis_and_a_cramp():
    current = med("bac", TABLET_10, dose=mg(10), per_day=1, days_ago=30)
    assert run("baclofen-titration", cirrhosis(), twitch(), current) == []
    assert run("baclofen-titration", cramp(), current) == []


@pytest.mark.parametrize("daily, times_now, expected", [
    (10, 3, (10, 1)), (20, 1, (20, 1)), (20, None, (10, 2)), (30, 2, (10, 3)), (30, 3, (10, 3)),
    (15, 3, (5, 3)), (25, None, (25, 1)),
])
def test_regimen(daily, times_now, expected):
    assert regimen(daily, times_now) == expected
