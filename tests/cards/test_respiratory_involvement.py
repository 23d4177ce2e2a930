"""respiratory-involvement: the text-coded phrenic test, other neuromuscular diagnoses, a phrenic test on file."""

from __future__ import annotations

from .fhir_builders import ICD10CM, SNOMED, codes, concept, condition, created, order, run, twitch, valid

DIAPHRAGM = concept(SNOMED, "64228003", "Paralysis of diaphragm")


def _phrenic(card):
    return [r for r in created(card) if "coding" not in r["code"]]


def test_the_phrenic_test_is_advice_not_an_uncoded_order():
    [card] = run("respiratory-involvement", twitch(), condition("dia", DIAPHRAGM))
    assert _phrenic(card) == []  # every suggested order carries a code
    assert "phrenic nerve stimulation with twitch pressure measurement" in card.detail
    assert "Not offered as an order" in card.detail and "15 minutes of quiet breathing" in card.detail
    assert valid(card)
    referrals = [r for r in created(card) if "coding" in r["code"]]
    assert {r["priority"] for r in referrals} == {"urgent"}
    assert codes(card) == {"306275005", "308474002"}


def test_myasthenia_with_respiratory_insufficiency_fires():
    mg = condition("mg", concept(ICD10CM, "G70.01", "Myasthenia gravis with (acute) exacerbation"))
    insufficiency = condition("ri", concept(SNOMED, "409623005", "Respiratory insufficiency"))
    assert run("respiratory-involvement", mg, insufficiency)


def test_respiratory_failure_without_neuromuscular_findings_is_silent():
    assert run("respiratory-involvement", condition("rf", concept(ICD10CM, "J96.01"))) == []


def test_a_phrenic_test_on_file_by_name_is_not_suggested_again():
    done = order("ph", {"text": "Phrenic nerve conduction study"}, 30, rtype="Procedure")
    [card] = run("respiratory-involvement", twitch(), condition("dia", DIAPHRAGM), done)
    assert "Phrenic nerve test already on file" in card.detail
    assert "To arrange with neurology" not in card.detail


def test_one_referral_on_file_leaves_the_other():
    pulm = order("pulm", concept(SNOMED, "306273003", "Referral to chest physician"), 10)
    [card] = run("respiratory-involvement", twitch(), condition("dia", DIAPHRAGM), pulm)
    assert codes(card) == {"308474002"}


def test_generalized_weakness_with_lung_disease_is_not_respiratory_muscle_involvement():
    failure = condition("crf", concept(ICD10CM, "J96.11", "Chronic respiratory failure with hypoxia"))
    weakness = condition("wk", concept(ICD10CM, "M62.81", "Muscle weakness (generalized)"))
    assert run("respiratory-involvement", failure, weakness) == []
    [card] = run("respiratory-involvement", failure, twitch())
    assert "Respiratory involvement with a neuromuscular cause" in card.detail


def test_diaphragm_paralysis_is_involvement_by_itself_but_a_diaphragm_disorder_needs_a_link():
    [card] = run("respiratory-involvement", condition("dia", DIAPHRAGM))
    assert card.indicator == "critical" and "Respiratory muscle involvement" in card.detail
    disorder = condition("j986", concept(ICD10CM, "J98.6", "Disorders of diaphragm"))
    assert run("respiratory-involvement", disorder) == []
    assert run("respiratory-involvement", disorder, twitch())
