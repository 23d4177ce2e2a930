"""baclofen-titration: the weekly step, its ceiling, and when the dose or date is not known."""

from __future__ import annotations

import pytest

from cdshooks.cards._baclofen import regimen

from .fhir_builders import ago, cirrhosis, cramp, med, mg, only_action, run, rx, tablets, text, twitch, valid

TABLET_10 = rx("197391", "baclofen 10 MG Oral Tablet")


def test_one_step_up_keeps_a_once_daily_schedule_and_points_to_the_current_order():
    current = med("bac", TABLET_10, dose=tablets(1), per_day=1, days_ago=8)
    [card] = run("baclofen-titration", cirrhosis(), cramp(), current)
    assert card.indicator == "info" and valid(card)
    order = only_action(card).resource
    dosage = order["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 20
    assert dosage["timing"]["repeat"]["frequency"] == 1
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "197391"
    assert order["priorPrescription"]["reference"] == "MedicationRequest/bac"
    assert "Baclofen 10 mg/day" in card.detail and "raise to 20 mg/day" in card.summary


def test_the_step_never_passes_30_mg_a_day():
    current = med("bac", text("baclofen 12.5 mg"), dose=mg(12.5), per_day=2, days_ago=8)  # 25 mg/day
    [card] = run("baclofen-titration", cirrhosis(), cramp(), current)
    dosage = only_action(card).resource["dosageInstruction"][0]
    assert (dosage["doseAndRate"][0]["doseQuantity"]["value"], dosage["timing"]["repeat"]["frequency"]) == (10, 3)
    assert run("baclofen-titration", cirrhosis(), cramp(), med("bac", TABLET_10, dose=mg(10), per_day=3,
                                                                days_ago=30)) == []


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
