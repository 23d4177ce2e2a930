"""lgi1-immunotherapy: a recent positive with a current finding treats, an old one re-tests, none stays silent."""

from __future__ import annotations

from .fhir_builders import SNOMED, codes, concept, condition, created, lgi1, med, order, run, rx, twitch, valid

POS = [concept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS")]


def test_a_recent_positive_with_twitching_suggests_only_the_coded_referral():
    [card] = run("lgi1-immunotherapy", lgi1("l", 10, valueString="1:80"), twitch())
    assert card.indicator == "warning"
    assert codes(card) == {"308474002"}  # IVIG and carbamazepine are advice, not unsigned orders
    assert not [r for r in created(card) if r["resourceType"] == "MedicationRequest"]
    assert "intravenous immunoglobulin (IVIG)" in card.detail and "carbamazepine as adjunctive therapy" in card.detail
    assert "Current hyperexcitability finding" in card.detail and "1:80" in card.detail
    [referral] = created(card)
    assert {r["reference"] for r in referral["reasonReference"]} == {"Observation/l", "Condition/tw"}
    assert valid(card)


def test_no_current_finding_means_no_card():
    assert run("lgi1-immunotherapy", lgi1("l", 10, valueString="1:80")) == []
    resolved = twitch(clinical="resolved")
    assert run("lgi1-immunotherapy", lgi1("l", 10, valueString="1:80"), resolved) == []


def test_an_old_positive_with_a_current_finding_asks_for_a_retest():
    insomnia = condition("in", concept(SNOMED, "193462001", "Insomnia"))
    [card] = run("lgi1-immunotherapy", lgi1("l", 1200, interpretation=POS), insomnia)
    assert card.indicator == "info"
    assert codes(card) == {"82978-8", "308474002"}
    assert "older than 365 days" in card.detail


def test_the_window_is_a_setting():
    record = (lgi1("l", 200, interpretation=POS), twitch())
    assert run("lgi1-immunotherapy", *record)[0].indicator == "warning"
    assert run("lgi1-immunotherapy", *record, antibody_result_days=100)[0].indicator == "info"


def test_an_old_positive_already_retested_and_referred_is_silent():
    retest = order("rt", concept("http://loinc.org", "82978-8"), 20, status="active")
    referral = order("ref", concept(SNOMED, "308474002"), 30)
    assert run("lgi1-immunotherapy", lgi1("l", 1200, interpretation=POS), twitch(), retest, referral) == []


def test_a_low_titre_is_not_positive():
    assert run("lgi1-immunotherapy", lgi1("l", 10, valueString="1:5"), twitch()) == []


def test_active_carbamazepine_is_named_not_advised_again():
    tegretol = med("cbz", rx("197441", "carbamazepine 100 MG Oral Tablet"), kind="MedicationStatement")
    [card] = run("lgi1-immunotherapy", lgi1("l", 10, interpretation=POS), twitch(), tegretol)
    assert "Carbamazepine already active" in card.detail
    assert "carbamazepine as adjunctive therapy" not in card.detail


def test_referral_and_ivig_in_place_is_silent():
    referral = order("ref", concept(SNOMED, "308474002"), 30)
    ivig = med("ivig", {"medicationCodeableConcept": {"text": "Immune globulin (human) 10% IV"}})
    assert run("lgi1-immunotherapy", lgi1("l", 10, valueString="Positive"), twitch(), referral, ivig) == []


def test_irinotecan_keeps_carbamazepine_out_and_says_why():
    irinotecan = med("iri", rx("51499", "irinotecan"))
    [card] = run("lgi1-immunotherapy", lgi1("l", 10, valueString="Positive"), twitch(), irinotecan)
    assert "carbamazepine as adjunctive therapy" not in card.detail
    assert "CYP3A4 inducer" in card.detail and "reduce its efficacy" in card.detail
