"""Unknown is not absent: an entry whose status, or whose main code, cannot be read is "present but
unreadable" for the concepts it may hold. No card states the absence of those concepts; the rule stays
silent about absence or says what it saw. Each case beside its readable twin (positive and negative)."""

from __future__ import annotations

import math

import pytest

from cdshooks.cards.clinical import findings, findings_in_doubt, order_status_in_doubt
from cdshooks.fhir.record import Record

from .fhir_builders import (
    ICD10CM,
    NOW,
    PATIENT,
    SNOMED,
    cirrhosis,
    concept,
    condition,
    cramp,
    med_draft,
    mg,
    order,
    run,
    rx,
    twitch,
    weakness,
)

EMG = concept(SNOMED, "42803009", "Electromyography")
ALS = concept(SNOMED, "86044005", "Amyotrophic lateral sclerosis")
SPASTICITY = concept(ICD10CM, "G35.D", "Multiple sclerosis, unspecified")
BACLOFEN_10 = rx("197391", "baclofen 10 MG Oral Tablet")
HOSTILE = [True, 7, math.nan, -math.inf, [], {}, {"value": "active"}, "garbage", [1, 2], {"coding": "x"},
           {"coding": [{"code": 5}]}, {"coding": {"value": [{"code": "resolved"}]}}]


def record(*resources: dict) -> Record:
    return Record("p1", list(resources), NOW)


def detail_of(cards) -> str:
    return "\n".join(c.summary + "\n" + c.detail for c in cards)


# -- the record's verdicts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_a_condition_whose_clinical_status_cannot_be_read_is_in_doubt_not_present(value):
    res = cirrhosis(clinicalStatus=value)
    rec = record(res)
    assert findings_in_doubt(rec, "cirrhosis") == [res]
    assert findings(rec, "cirrhosis") == []


@pytest.mark.parametrize("value", HOSTILE)
def test_a_condition_whose_verification_status_cannot_be_read_is_in_doubt(value):
    rec = record(cirrhosis(verificationStatus=value))
    assert findings_in_doubt(rec, "cirrhosis") and not findings(rec, "cirrhosis")


@pytest.mark.parametrize("status", [
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
    {"text": "no coding at all"}, None, [{"coding": [{"code": "active"}]}]])
def test_readable_condition_statuses_are_not_in_doubt(status):
    rec = record(cirrhosis(clinicalStatus=status))
    assert findings_in_doubt(rec, "cirrhosis") == []


@pytest.mark.parametrize("status, doubt", [("final", False), ("preliminary", False), ("cancelled", False),
                                           (["final"], False), ("unknown", True), (True, True), (None, True),
                                           ("Final!", True), ({"code": "final"}, True)])
def test_an_observation_status_that_is_not_a_code_leaves_the_finding_in_doubt(status, doubt):
    obs = {"resourceType": "Observation", "id": "o", "subject": PATIENT, "status": status, "code": ALS,
           "valueBoolean": True}
    assert bool(findings_in_doubt(record(obs), "motor_neuron_disease")) is doubt


@pytest.mark.parametrize("status, doubt", [("completed", False), ("not-done", False), (["completed"], False),
                                           ("unknown", True), (True, True), (-math.inf, True), (None, True),
                                           ("done", True), ({"code": "completed"}, True)])
def test_order_status_in_doubt(status, doubt):
    assert order_status_in_doubt({"resourceType": "Procedure", "status": status}) is doubt


# -- emg-evaluation: an EMG whose status or reading cannot be read --------------------------------------------


def old_abnormal_emg(**changes) -> dict:
    res = order("emg", EMG, 500, rtype="Procedure", outcome={"coding": [{"system": SNOMED, "code": "263654008"}]})
    res.update(changes)
    return res


def test_an_old_abnormal_emg_silences_emg_evaluation():
    assert run("emg-evaluation", twitch(onset_days=900), old_abnormal_emg()) == []


@pytest.mark.parametrize("changes", [{"status": True}, {"status": 7}, {"status": "unknown"}, {"status": None},
                                     {"outcome": -math.inf}, {"outcome": {"coding": [{"code": []}]}},
                                     {"outcome": "   "}])
def test_an_emg_whose_status_or_reading_cannot_be_read_is_named_not_denied(changes):
    [card] = run("emg-evaluation", twitch(onset_days=900), old_abnormal_emg(**changes))
    assert "No EMG" not in card.detail
    assert "whose status or result could not be read" in card.detail
    assert "Procedure" in card.detail and "(date unreadable)" not in card.detail


def test_a_report_whose_conclusion_codes_cannot_be_read_is_named():
    report = order("emg", EMG, 500, rtype="DiagnosticReport", status="final", conclusionCode=[5])
    [card] = run("emg-evaluation", twitch(onset_days=900), report)
    assert "whose status or result could not be read" in card.detail and "No EMG" not in card.detail


def test_an_old_emg_with_a_readable_normal_reading_still_says_none_recent():
    emg = order("emg", EMG, 500, rtype="Procedure", outcome={"text": "Normal study"})
    [card] = run("emg-evaluation", twitch(onset_days=900), emg)
    assert "No EMG or nerve conduction study on file in the last 365 days" in card.detail
    assert "could not be read" not in card.detail


def test_a_recent_emg_of_unreadable_status_is_not_denied():
    emg = order("emg", EMG, 30, rtype="Procedure", status=True)
    cards = run("emg-evaluation", twitch(onset_days=900), emg)
    assert "No EMG" not in detail_of(cards)


# -- mnd-red-flag and pnh-evaluation: a diagnosis whose status cannot be read ----------------------------------


def test_mnd_red_flag_does_not_deny_a_diagnosis_it_could_not_read():
    base = (twitch(), weakness())
    [card] = run("mnd-red-flag", *base)
    assert "No motor neuron disease diagnosis on the record" in card.detail
    [card] = run("mnd-red-flag", *base, condition("als", ALS, clinicalStatus=True))
    assert "No motor neuron disease" not in card.detail
    assert "could not be checked" in card.detail


# -- baclofen-dosing: cirrhosis, cramp or spasticity in doubt ---------------------------------------------------


def test_baclofen_indication_note_says_no_diagnosis_only_when_it_can():
    order = med_draft("d1", BACLOFEN_10, dose=mg(10), per_day=1)
    [card] = run("baclofen-dosing", drafts=(order,))
    assert "No cirrhosis, muscle cramp or spasticity diagnosis in the record" in card.detail
    for hostile in (cramp(clinicalStatus=True), condition("ci", {"coding": {"value": [1]}}),
                    {"resourceType": 5, "id": "x"}):
        [card] = run("baclofen-dosing", hostile, drafts=(order,))
        assert "No cirrhosis" not in card.detail and "could not be checked" in card.detail, hostile


def test_baclofen_warning_does_not_say_no_cirrhosis_when_cirrhosis_is_in_doubt():
    order = med_draft("d1", BACLOFEN_10, dose=mg(10), per_day=3)  # 30 mg/day, a first order
    [card] = run("baclofen-dosing", cramp(), drafts=(order,))
    assert "No cirrhosis:" in card.detail
    [card] = run("baclofen-dosing", cramp(), cirrhosis(verificationStatus=7), drafts=(order,))
    assert "No cirrhosis" not in card.detail
    assert "Whether cirrhosis is on the record could not be checked" in card.detail
    assert "30 mg/day" in card.detail


def test_baclofen_names_a_spasticity_diagnosis_in_doubt():
    order = med_draft("d1", BACLOFEN_10, dose=mg(10), per_day=3)
    assert run("baclofen-dosing", condition("ms", SPASTICITY), drafts=(order,)) == []
    [card] = run("baclofen-dosing", condition("ms", SPASTICITY, clinicalStatus=True), drafts=(order,))
    assert card.indicator == "warning"
    assert "spasticity diagnosis is on the record whose status could not be read" in card.detail
