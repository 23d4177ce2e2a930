"""baclofen-dosing: the three ceilings, the corrected draft, the indication note, and no guessing."""

from __future__ import annotations

from .fhir_builders import (
    ICD10CM,
    SNOMED,
    cirrhosis,
    concept,
    condition,
    cramp,
    med,
    med_draft,
    mg,
    only_action,
    run,
    rx,
    tablets,
    text,
    twitch,
    valid,
)

TABLET_10 = rx("197391", "baclofen 10 MG Oral Tablet")
TABLET_20 = rx("197392", "baclofen 20 MG Oral Tablet")
MS = condition("ms", concept(ICD10CM, "G35.D", "Multiple sclerosis, unspecified"))
ORAL = {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}


def draft(rid: str = "d1", medication: dict = TABLET_20, **dosing) -> dict:
    """A draft baclofen order (20 mg tablets unless told), taken by mouth when it has a dosage."""
    res = med_draft(rid, medication, **dosing)
    if "dosageInstruction" in res:
        res["dosageInstruction"][0]["route"] = ORAL
    return res


def update_of(card) -> dict:
    action = only_action(card)
    assert action.type == "update"
    return action.resource


def daily(resource: dict) -> float:
    dosage = resource["dosageInstruction"][0]
    return dosage["doseAndRate"][0]["doseQuantity"]["value"] * dosage["timing"]["repeat"]["frequency"]


def test_a_first_order_above_10_mg_is_corrected_in_place():
    order = draft(dose=tablets(1), per_day=3)  # 20 mg tablets x 3 = 60 mg/day
    [card] = run("baclofen-dosing", cramp(), drafts=(order,))
    assert card.indicator == "warning" and "60 mg/day" in card.detail and "use 10 mg/day" in card.summary
    fixed = update_of(card)
    assert valid(card)
    # a 20 mg tablet cannot give 10 mg in whole tablets: the corrected order uses the 10 mg tablet
    assert fixed["id"] == "d1" and fixed["status"] == "draft"
    assert fixed["medicationCodeableConcept"]["coding"] == TABLET_10["medicationCodeableConcept"]["coding"]
    assert "does not give 10 mg doses in whole tablets" in card.detail
    assert daily(fixed) == 10 and fixed["dosageInstruction"][0]["route"] == ORAL
    assert fixed["dosageInstruction"][0]["maxDosePerPeriod"]["numerator"]["value"] == 30
    assert order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 1  # the draft is untouched


def test_a_raise_above_the_weekly_step_is_corrected_to_the_step():
    active = med("bac", TABLET_10, dose=mg(10), per_day=1)
    [card] = run("baclofen-dosing", cirrhosis(), cramp(), active, drafts=(draft(dose=mg(10), per_day=3),))
    assert daily(update_of(card)) == 20 and "a raise of 20 mg/day over the active 10 mg/day" in card.detail
    assert run("baclofen-dosing", cirrhosis(), cramp(), active, drafts=(draft(dose=mg(10), per_day=2),)) == []


def test_cirrhosis_caps_at_30_even_when_the_active_dose_is_unknown():
    active = med("bac", text("baclofen"))  # dose not computable: not a first order, no step ceiling
    [card] = run("baclofen-dosing", cirrhosis(), active, drafts=(draft(dose=mg(20), per_day=2),))
    assert daily(update_of(card)) == 30
    assert run("baclofen-dosing", cramp(), active, drafts=(draft(dose=mg(20), per_day=2),)) == []


def test_spasticity_follows_its_own_label_but_cirrhosis_still_caps():
    assert run("baclofen-dosing", MS, drafts=(draft(medication=text("baclofen 5 mg"), dose=mg(5), per_day=3),)) == []
    assert run("baclofen-dosing", MS, drafts=(draft(dose=mg(20), per_day=3),)) == []
    [card] = run("baclofen-dosing", MS, cirrhosis(), drafts=(draft(dose=mg(20), per_day=3),))
    assert daily(update_of(card)) == 30


def test_no_dose_card_when_the_dose_cannot_be_computed():
    """No dose guessed, no ceiling, no corrected order: the card only says the dose could not be read."""
    unknown = draft(medication=text("baclofen"), per_day=3)
    [card] = run("baclofen-dosing", cirrhosis(), drafts=(unknown,))
    assert card.indicator == "info" and not card.suggestions and "could not be read" in card.summary
    [info] = run("baclofen-dosing", twitch(), drafts=(unknown,))
    assert info.indicator == "info" and "FDA-approved for spasticity" in info.detail and not info.suggestions


def test_indication_note_without_cirrhosis_cramp_or_spasticity():
    [card] = run("baclofen-dosing", twitch(), drafts=(draft(medication=TABLET_10, dose=tablets(1), per_day=1),))
    assert card.indicator == "info" and "off-label" in card.summary
    assert run("baclofen-dosing", cramp(), drafts=(draft(medication=TABLET_10, dose=tablets(1), per_day=1),)) == []


def test_only_baclofen_orders_are_judged_and_order_select_judges_the_selection():
    other = draft("q1", rx("852920", "quinidine gluconate 324 MG Extended Release Oral Tablet"), dose=tablets(1),
                  per_day=3)
    high = draft("d1", dose=tablets(1), per_day=3)
    assert run("baclofen-dosing", cramp(), drafts=(other,)) == []
    assert run("baclofen-dosing", cramp(), drafts=(other, high), selected=(other,)) == []
    assert run("baclofen-dosing", cramp(), drafts=(other, high), selected=(high,))


def test_the_drafted_tablet_is_kept_when_it_gives_whole_tablets():
    active = med("bac", TABLET_10, dose=mg(10), per_day=1, days_ago=30)  # 10 mg/day
    once = draft(dose=tablets(2), per_day=1)  # 20 mg tablets, 40 mg once daily: corrected to 20 mg/day
    [card] = run("baclofen-dosing", cirrhosis(), cramp(), active, drafts=(once,))
    fixed = update_of(card)
    assert daily(fixed) == 20 and fixed["dosageInstruction"][0]["timing"]["repeat"]["frequency"] == 1
    assert fixed["medicationCodeableConcept"] == TABLET_20["medicationCodeableConcept"]
    assert "whole tablets" not in card.detail
    twice = draft(dose=tablets(1), per_day=2)  # 20 mg tablets twice daily, 40 mg: 10 mg twice daily needs 10 mg
    fixed = update_of(run("baclofen-dosing", cirrhosis(), cramp(), active, drafts=(twice,))[0])
    assert daily(fixed) == 20
    assert fixed["medicationCodeableConcept"]["coding"] == TABLET_10["medicationCodeableConcept"]["coding"]


def test_outside_cirrhosis_the_schedule_is_not_called_the_guideline_schedule():
    [card] = run("baclofen-dosing", cramp(), drafts=(draft(dose=mg(20), per_day=2),))
    assert "exceeds the guideline schedule" not in card.summary and "cautious" in card.summary
    assert "only for severe muscle cramps in cirrhosis" in card.detail
    assert "If cramps persist" not in update_of(card)["dosageInstruction"][0]["text"]
