"""emg-evaluation: persistence from settings, the benign-after-negative-EMG reading, deferring to mnd-red-flag."""

from __future__ import annotations

from .fhir_builders import PATIENT, SNOMED, ago, codes, concept, condition, created, finding, order, run, twitch, valid

EMG = concept(SNOMED, "42803009", "Electromyography")


def benign(recorded_days: float) -> dict:
    code = {"coding": [{"system": "http://example.org/local", "code": "BFS",
                        "display": "Benign fasciculation syndrome"}]}
    return condition("bfs", code, onset_days=900, recordedDate=ago(recorded_days))


def test_persistence_uses_the_setting():
    assert run("emg-evaluation", twitch(onset_days=20)) == []
    [card] = run("emg-evaluation", twitch(onset_days=20), persistent_days=14)
    assert codes(card) == {"42803009"} and card.indicator == "warning"
    assert valid(card)


def test_an_undated_twitch_fires_only_with_another_symptom():
    undated = {"resourceType": "Observation", "id": "tw", "status": "final", "subject": PATIENT,
               "code": concept(SNOMED, "82470000")}
    assert run("emg-evaluation", undated) == []
    stiffness = finding("st", concept(SNOMED, "16046003", "Muscle stiffness"))
    [card] = run("emg-evaluation", undated, stiffness)
    assert "Muscle stiffness" in card.detail
    assert {r["reference"] for r in created(card)[0]["reasonReference"]} == {"Observation/tw", "Observation/st"}


def test_it_defers_to_the_red_flag():
    assert run("emg-evaluation", twitch(onset_days=60), fired=("mnd-red-flag",)) == []


def test_study_window_comes_from_settings():
    record = (twitch(onset_days=200), order("emg", EMG, 100, rtype="DiagnosticReport", status="final"))
    assert run("emg-evaluation", *record) == []
    assert run("emg-evaluation", *record, study_window_days=60)


def test_an_emg_without_a_reading_before_the_benign_diagnosis_counts_as_negative():
    emg = order("emg", EMG, 500, rtype="Procedure")
    assert run("emg-evaluation", twitch(onset_days=900), benign(400), emg) == []


def test_a_benign_diagnosis_made_before_the_emg_does_not_silence():
    emg = order("emg", EMG, 500, rtype="Procedure")
    assert run("emg-evaluation", twitch(onset_days=900), benign(600), emg)


def test_an_emg_read_as_abnormal_of_any_age_answers_the_question():
    emg = order("emg", EMG, 500, rtype="Procedure", outcome={"text": "Abnormal: chronic denervation"})
    assert run("emg-evaluation", twitch(onset_days=900), emg) == []
    assert run("emg-evaluation", twitch(onset_days=900), benign(400), emg) == []
    unread = order("emg", EMG, 500, rtype="Procedure")
    assert run("emg-evaluation", twitch(onset_days=900), unread)  # old, no reading, no diagnosis after it


def test_a_made_diagnosis_silences_it():
    als = condition("als", concept("http://hl7.org/fhir/sid/icd-10-cm", "G12.21", "Amyotrophic lateral sclerosis"))
    nmt = condition("nmt", concept(SNOMED, "763803004", "Morvan syndrome"))
    assert run("emg-evaluation", twitch(onset_days=60))
    assert run("emg-evaluation", twitch(onset_days=60), als) == []
    assert run("emg-evaluation", twitch(onset_days=60), nmt) == []


def test_eyelid_twitching_alone_does_not_fire_it():
    eyelid = twitch(onset_days=60, bodySite=[{"text": "Left upper eyelid"}])
    assert run("emg-evaluation", eyelid) == []
    worded = condition("tw", concept(SNOMED, "82470000", text="Eyelid twitching"), onset_days=60)
    assert run("emg-evaluation", worded) == []
    tongue = twitch(onset_days=60, bodySite=[{"text": "Tongue"}])
    assert run("emg-evaluation", tongue)  # the tongue is not the face: a bulbar sign
