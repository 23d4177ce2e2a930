"""lgi1-immunotherapy: the IVIG and carbamazepine orders, active medications, titres."""

from __future__ import annotations

from .fhir_builders import SNOMED, codes, concept, created, lgi1, med, order, run, rx, valid


def test_ivig_is_text_coded_without_a_dose():
    [card] = run("lgi1-immunotherapy", lgi1("l", 10, valueString="1:80"))
    meds = [r for r in created(card) if r["resourceType"] == "MedicationRequest"]
    ivig = next(r for r in meds if "coding" not in r["medicationCodeableConcept"])
    assert ivig["medicationCodeableConcept"] == {"text": "immune globulin (IVIG)"}
    assert "doseAndRate" not in ivig["dosageInstruction"][0]
    assert ivig["reasonReference"] == [{"reference": "Observation/l", "display": "LGI1 antibody 1:80"}]
    carbamazepine = next(r for r in meds if "coding" in r["medicationCodeableConcept"])
    assert carbamazepine["medicationCodeableConcept"]["coding"][0]["code"] == "2002"
    assert valid(card)


def test_a_low_titre_is_not_positive():
    assert run("lgi1-immunotherapy", lgi1("l", 10, valueString="1:5")) == []


def test_active_carbamazepine_product_is_not_suggested_again():
    tegretol = med("cbz", rx("197441", "carbamazepine 100 MG Oral Tablet"), kind="MedicationStatement")
    [card] = run("lgi1-immunotherapy", lgi1("l", 10, interpretation=[concept(
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS")]), tegretol)
    assert "2002" not in codes(card)
    assert "Carbamazepine already active" in card.detail


def test_referral_on_file_leaves_ivig_and_the_adjunct():
    referral = order("ref", concept(SNOMED, "308474002"), 30)
    [card] = run("lgi1-immunotherapy", lgi1("l", 10, valueString="Positive"), referral)
    assert codes(card) == {"2002"}
    assert any(r["medicationCodeableConcept"].get("text") == "immune globulin (IVIG)" for r in created(card))


def test_irinotecan_by_ingredient_code_blocks_carbamazepine():
    irinotecan = med("iri", rx("51499", "irinotecan"))
    [card] = run("lgi1-immunotherapy", lgi1("l", 10, valueString="Positive"), irinotecan)
    assert "2002" not in codes(card)
    assert "CYP3A4 inducer" in card.detail
