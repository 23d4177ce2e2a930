"""pnh-evaluation: the LGI1 indication (guideline sequencing), results and orders on file."""

from __future__ import annotations

from .fhir_builders import ICD10CM, LOINC, SNOMED, codes, concept, condition, lgi1, order, run, twitch

PARESTHESIA = concept(SNOMED, "91019004", "Paresthesia")
INSOMNIA = concept(SNOMED, "193462001", "Insomnia")
NEUROMYOTONIA = concept(ICD10CM, "G71.19", text="Neuromyotonia")
EMG = concept(SNOMED, "42803009", "Electromyography")


def test_paresthesia_and_insomnia_bring_the_lgi1_test():
    [card] = run("pnh-evaluation", twitch(), condition("pa", PARESTHESIA), condition("in", INSOMNIA))
    assert codes(card) == {"95908", "82978-8"}


def test_paresthesia_alone_brings_the_nerve_studies_only():
    [card] = run("pnh-evaluation", twitch(), condition("pa", PARESTHESIA))
    assert codes(card) == {"95908"}
    assert "LGI1 antibody testing follows if the EMG confirms neuromyotonia" in card.detail


def test_a_positive_result_of_any_age_leaves_the_patient_to_lgi1_immunotherapy():
    old_positive = lgi1("l", 800, valueString="1:40")
    assert run("pnh-evaluation", twitch(), condition("nm", NEUROMYOTONIA), old_positive) == []


def test_an_old_negative_result_does_not_silence_and_the_window_is_configurable():
    record = (twitch(), condition("nm", NEUROMYOTONIA), lgi1("l", 200, valueString="Negative"))
    assert run("pnh-evaluation", *record) == []
    assert run("pnh-evaluation", *record, study_window_days=100)


def test_everything_on_file_means_silent_and_a_pending_lgi1_order_is_not_repeated():
    pending = order("lo", concept(LOINC, "82978-8"), 5, status="active")
    emg = order("emg", EMG, 30, rtype="Procedure")
    record = (twitch(), condition("nm", NEUROMYOTONIA), pending)
    [card] = run("pnh-evaluation", *record)
    assert codes(card) == {"95908"}
    assert run("pnh-evaluation", *record, emg) == []
