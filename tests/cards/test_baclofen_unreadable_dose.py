"""baclofen-dosing: an order whose dose cannot be read is said so (no dose guessed, no ceiling, no corrected
order), wherever a ceiling could apply; a spasticity patient without cirrhosis gets no such card."""

from __future__ import annotations

import math

import pytest

from .fhir_builders import ICD10CM, cirrhosis, concept, condition, cramp, med_draft, mg, run, rx, twitch

TABLET_10 = rx("197391", "baclofen 10 MG Oral Tablet")
MS = condition("ms", concept(ICD10CM, "G35.D", "Multiple sclerosis, unspecified"))
TID = {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}


def order(**dosage) -> dict:
    res = med_draft("d1", TABLET_10)
    if dosage:
        res["dosageInstruction"] = [dosage]
    return res


UNREADABLE = {
    "a string dose value": (order(doseAndRate=[{"doseQuantity": {"value": "ten", "unit": "mg"}}], timing=TID),
                            "its dose could not be read"),
    "a NaN dose value": (order(doseAndRate=[{"doseQuantity": {"value": math.nan, "unit": "mg"}}], timing=TID),
                         "its dose could not be read"),
    "a dose quantity that is a string": (order(doseAndRate=[{"doseQuantity": "10 mg"}], timing=TID),
                                         "its dose could not be read"),
    "no timing": (order(doseAndRate=[{"doseQuantity": mg(10)}]), "its timing is missing or could not be read"),
    "a timing that is a string": (order(doseAndRate=[{"doseQuantity": mg(10)}], timing="BID"),
                                  "its timing is missing or could not be read"),
    "no dosage": (order(), "its dosage is missing or could not be read"),
    "a dose unit that is not mass": (order(doseAndRate=[{"doseQuantity": {"value": 5, "unit": "mL"}}], timing=TID),
                                     "its dose unit cannot be converted to mg"),
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_unreadable_dose_in_cirrhosis_is_said_not_guessed(name):
    draft, reason = UNREADABLE[name]
    [card] = run("baclofen-dosing", cirrhosis(), cramp(), drafts=(draft,))
    assert card.indicator == "info" and not card.suggestions  # no ceiling, no corrected order
    assert "the dose could not be read" in card.summary
    assert reason in card.detail and "Check the dose before signing" in card.detail
    assert "at most 30 mg/day" in card.detail or "up to 30 mg/day" in card.detail  # the schedule it was not checked against
    assert "mg/day exceeds" not in card.summary


def test_an_unreadable_dose_without_a_diagnosis_also_carries_the_indication_note():
    draft, _ = UNREADABLE["a NaN dose value"]
    [card] = run("baclofen-dosing", twitch(), drafts=(draft,))
    assert "the dose could not be read" in card.summary
    assert "FDA-approved for spasticity" in card.detail
    assert "No cirrhosis, muscle cramp or spasticity diagnosis in the record." in card.detail


def test_a_spasticity_patient_without_cirrhosis_gets_no_unreadable_dose_card():
    draft, _ = UNREADABLE["a string dose value"]
    assert run("baclofen-dosing", MS, drafts=(draft,)) == []
    [card] = run("baclofen-dosing", MS, cirrhosis(), drafts=(draft,))  # with cirrhosis the 30 mg cap applies
    assert "the dose could not be read" in card.summary


def test_a_readable_dose_gets_no_unreadable_dose_card():
    ok = order(doseAndRate=[{"doseQuantity": mg(10)}], timing={"repeat": {"frequency": 1, "period": 1,
                                                                          "periodUnit": "d"}})
    assert run("baclofen-dosing", cirrhosis(), cramp(), drafts=(ok,)) == []
    [card] = run("baclofen-dosing", cirrhosis(), cramp(), drafts=(order(doseAndRate=[{"doseQuantity": mg(20)}],
                                                                          timing=TID),))
    assert card.indicator == "warning" and "could not be read" not in card.detail  # 60 mg/day: the dose card


@pytest.mark.parametrize("hostile", [7, "x", [None], [{"doseAndRate": 5}], [{"timing": {"repeat": "daily"}}]])
def test_hostile_dosages_never_fail_the_rule(hostile):
    draft = med_draft("d1", TABLET_10)
    draft["dosageInstruction"] = hostile
    [card] = run("baclofen-dosing", cirrhosis(), drafts=(draft,))
    assert card.indicator == "info" and "the dose could not be read" in card.summary
