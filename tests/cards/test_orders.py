"""Suggested orders (``cdshooks.orders``): complete, valid FHIR R4, coded from the value set data."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdshooks.cards.clinical import daily_dose_mg, findings, medication_of
from cdshooks.cards.orders import CATEGORIES, describe, medication_request, order_key, service_request, suggest_codings
from cdshooks.fhir.models import validation_errors
from cdshooks.fhir.record import Record
from cdshooks.fhir.terminology import LOINC, RXNORM, SNOMED, UCUM, valueset

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def twitch_record() -> Record:
    tw = {"resourceType": "Condition", "id": "tw", "subject": {"reference": "Patient/p1"},
          "code": {"coding": [{"system": SNOMED, "code": "82470000", "display": "Muscle fasciculation"}]}}
    weak = {"resourceType": "Condition", "id": "wk", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": SNOMED, "code": "26544005", "display": "Muscle weakness"}]}}
    return Record("p1", [tw, weak], NOW)


def test_urgent_neurology_referral():
    rec = twitch_record()
    reasons = findings(rec, "fasciculation", "muscle_weakness")
    sr = service_request("p1", "neurology_referral", text="Urgent referral to neurology", category="referral",
                         priority="urgent", reasons=reasons + reasons, note="Fasciculations with weakness")
    assert validation_errors(sr) == []
    assert sr["resourceType"] == "ServiceRequest" and "id" not in sr
    assert (sr["status"], sr["intent"], sr["priority"]) == ("draft", "proposal", "urgent")
    assert sr["subject"] == {"reference": "Patient/p1"}
    assert {"system": SNOMED, "code": "308474002"}.items() <= sr["code"]["coding"][0].items()
    assert sr["code"]["text"] == "Urgent referral to neurology"
    assert sr["category"] == [{"coding": [CATEGORIES["referral"]]}]
    assert [r["reference"] for r in sr["reasonReference"]] == ["Condition/tw", "Condition/wk"]
    assert sr["note"] == [{"text": "Fasciculations with weakness"}]
    assert describe(sr) == "Urgent referral to neurology (urgent)"


@pytest.mark.parametrize("name, category", [
    ("emg_ncs", "procedure"), ("nerve_conduction", "procedure"), ("bmp_panel", "laboratory"),
    ("magnesium_order", "laboratory"), ("lgi1_test", "laboratory"), ("thigh_mri", "imaging"),
    ("abi", "procedure"), ("pulmonology_referral", "referral"), ("neurology_referral", "referral"),
])
def test_every_suggested_order_value_set_builds_a_valid_request(name, category):
    sr = service_request("p1", name, text=valueset(name).title, category=category)
    assert validation_errors(sr) == []
    suggested = {(c["system"], c["code"]) for c in sr["code"]["coding"]}
    assert suggested == {(c["system"], c["code"]) for c in valueset(name).codings if c.get("suggest")}
    assert "reasonReference" not in sr and "note" not in sr and sr["priority"] == "routine"


def test_bmp_and_magnesium_are_lab_orders_with_loinc():
    bmp = service_request("p1", "bmp_panel", text="Basic metabolic panel", category="laboratory")
    mg = service_request("p1", "magnesium_order", text="Magnesium", category="laboratory")
    assert (LOINC, "24321-2") in {(c["system"], c["code"]) for c in bmp["code"]["coding"]}
    assert (LOINC, "19123-9") in {(c["system"], c["code"]) for c in mg["code"]["coding"]}
    assert bmp["category"][0]["coding"][0]["code"] == "108252007"
    assert order_key(bmp) != order_key(mg)


def test_service_request_rejects_what_fhir_or_the_catalogue_would_not_accept():
    with pytest.raises(ValueError, match="category"):
        service_request("p1", "emg_ncs", text="EMG", category="surgery")
    with pytest.raises(ValueError, match="priority"):
        service_request("p1", "emg_ncs", text="EMG", category="procedure", priority="soon")
    with pytest.raises(ValueError, match="intent"):
        service_request("p1", "emg_ncs", text="EMG", category="procedure", intent="draft")
    with pytest.raises(ValueError, match="suggest"):
        suggest_codings("fasciculation")
    with pytest.raises(KeyError):
        service_request("p1", "no_such_set", text="x", category="procedure")


def test_order_key_is_the_same_for_the_same_order_from_two_cards():
    a = service_request("p1", "emg_ncs", text="Needle EMG with NCS", category="procedure", priority="urgent")
    b = service_request("p1", "emg_ncs", text="EMG and nerve conduction studies", category="procedure")
    assert order_key(a) == order_key(b)
    assert order_key(a)[0] == "ServiceRequest"


def test_baclofen_request_is_valid_and_reads_back_as_its_daily_dose():
    rec = twitch_record()
    mr = medication_request("p1", "baclofen", dose_mg=10, times_per_day=1, max_mg_per_day=30,
                            text="10 mg once daily; raise by 10 mg/day each week, at most 30 mg/day",
                            reasons=findings(rec, "fasciculation"), product="197391")
    assert validation_errors(mr) == []
    assert (mr["status"], mr["intent"]) == ("draft", "proposal") and "id" not in mr
    assert mr["medicationCodeableConcept"]["coding"] == [
        {"system": RXNORM, "code": "197391", "display": "baclofen 10 MG Oral Tablet"}]
    dosage = mr["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": 10, "unit": "mg", "system": UCUM, "code": "mg"}
    assert dosage["timing"] == {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    assert dosage["maxDosePerPeriod"]["numerator"]["value"] == 30
    assert dosage["maxDosePerPeriod"]["denominator"]["code"] == "d"
    assert dosage["text"].startswith("10 mg once daily")
    assert mr["reasonReference"] == [{"reference": "Condition/tw", "display": "Muscle fasciculation"}]
    assert daily_dose_mg(mr) == 10
    assert medication_of(mr, rec).ingredients == {"baclofen"}
    assert describe(mr) == "Baclofen 10 MG Oral Tablet 10 mg once daily"


def test_ingredient_coding_and_product_checks():
    quinidine = medication_request("p1", "quinidine", dose_mg=200, times_per_day=2, text="200 mg twice daily")
    assert validation_errors(quinidine) == []
    assert quinidine["medicationCodeableConcept"]["coding"][0] == {"system": RXNORM, "code": "9068",
                                                                   "display": "quinidine"}
    assert describe(quinidine) == "Quinidine 200 mg twice daily"
    uncoded = medication_request("p1", "baclofen", dose_mg=10, times_per_day=1, text="10 mg once daily")
    assert uncoded["medicationCodeableConcept"] == {"text": "baclofen"}
    with pytest.raises(ValueError, match="product"):
        medication_request("p1", "baclofen", dose_mg=10, times_per_day=1, text="x", product="197441")


def test_update_of_a_draft_keeps_its_id_and_intent():
    mr = medication_request("p1", "baclofen", dose_mg=10, times_per_day=3, text="10 mg three times daily",
                            intent="order", id="draft-1")
    assert validation_errors(mr) == []
    assert mr["id"] == "draft-1" and mr["intent"] == "order"
    assert daily_dose_mg(mr) == 30
    assert describe(mr) == "Baclofen 10 mg three times daily"


def test_text_only_medication_request():
    mr = medication_request("p1", "baclofen", dose_mg=None, times_per_day=None, text="as directed")
    assert validation_errors(mr) == []
    assert mr["dosageInstruction"] == [{"text": "as directed"}]
    assert daily_dose_mg(mr) is None
    assert describe(mr) == "Baclofen"


def test_medication_keys_differ_by_drug_not_by_dose():
    a = medication_request("p1", "baclofen", dose_mg=10, times_per_day=1, text="a")
    b = medication_request("p1", "baclofen", dose_mg=20, times_per_day=1, text="b")
    c = medication_request("p1", "quinidine", dose_mg=200, times_per_day=2, text="c")
    assert order_key(a) == order_key(b) != order_key(c)
    with pytest.raises(KeyError):
        medication_request("p1", "nosuchdrug", dose_mg=1, times_per_day=1, text="x")


def test_needle_emg_with_nerve_conduction_covers_a_nerve_conduction_order_not_the_reverse():
    from cdshooks.cards.orders import covers

    emg = service_request("p1", "emg_ncs", text="Needle EMG with nerve conduction studies", category="procedure")
    ncs = service_request("p1", "nerve_conduction", text="Nerve conduction studies", category="procedure")
    bmp = service_request("p1", "bmp_panel", text="Basic metabolic panel", category="laboratory")
    assert covers(emg, ncs)
    assert not covers(ncs, emg) and not covers(emg, emg) and not covers(emg, bmp)
    worded = {"resourceType": "ServiceRequest", "code": {"text": "Nerve conduction study, both legs"}}
    assert covers(emg, worded)  # by the nerve conduction value set's names


def test_a_suggested_medication_order_is_taken_by_mouth():
    order = medication_request("p1", "carbamazepine", dose_mg=200, times_per_day=2, text="200 mg twice daily")
    assert order["dosageInstruction"][0]["route"]["coding"][0]["code"] == "26643006"
    assert not validation_errors(order)
