"""cirrhosis-cramps: indicator, the diuretic, and the baclofen / albumin / lab suggestions."""

from __future__ import annotations

from .fhir_builders import ICD10CM, cirrhosis, concept, condition, cramp, lab, med, mg, run, rx, text, twitch, valid

K, MG = "2823-3", "19123-9"
NORMAL = (lab("k", K, 4.2, "mmol/L", 5), lab("mg", MG, 2.0, "mg/dL", 5))


def actions(card) -> dict[str, dict]:
    """Suggested resources by their code (or text when uncoded)."""
    out = {}
    for s in card.suggestions:
        for a in s.actions:
            c = a.resource.get("code") or a.resource.get("medicationCodeableConcept")
            out[c["coding"][0]["code"] if c.get("coding") else c["text"]] = a.resource
    return out


def test_full_advice_for_a_new_patient():
    [card] = run("cirrhosis-cramps", cirrhosis(), cramp())
    assert card.indicator == "info" and valid(card)
    found = actions(card)
    assert set(found) == {"197391", "24321-2", "19123-9"}  # albumin is advice: no verified code, no dose
    dosage = found["197391"]["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 10
    assert dosage["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "d"}
    assert dosage["maxDosePerPeriod"]["numerator"]["value"] == 30
    assert "raise by 10 mg/day each week, to at most 30 mg/day" in dosage["text"]
    assert "20-40 g per week" in card.detail and "Not offered as an order" in card.detail
    assert dosage["route"]["coding"][0]["code"] == "26643006"
    assert found["197391"]["reasonReference"][0]["reference"] == "Condition/cr"
    for alternative in ("orphenadrine", "methocarbamol", "quinidine 400 mg/day"):
        assert alternative in card.detail


def test_warning_when_potassium_or_magnesium_is_low_and_the_diuretic_is_named():
    low_mg = lab("mg", MG, 0.6, "mmol/L", 5)  # 1.46 mg/dL
    lasix = med("lasix", rx("315971", "Lasix 40mg"))
    [card] = run("cirrhosis-cramps", cirrhosis(), twitch(), lab("k", K, 4.0, "mmol/L", 5), low_mg, lasix)
    assert card.indicator == "warning"
    assert "Twitching in cirrhosis on furosemide: correct low magnesium" in card.summary
    assert "Diuretic active: furosemide (Lasix 40mg)" in card.detail
    assert not {"24321-2", "19123-9"} & set(actions(card))


def test_a_low_calcium_alone_leaves_it_info():
    [card] = run("cirrhosis-cramps", cirrhosis(), cramp(), *NORMAL, lab("ca", "17861-6", 7.0, "mg/dL", 5))
    assert card.indicator == "info"


def test_what_is_already_done_is_not_suggested_and_all_done_is_silent():
    baclofen = med("bac", text("baclofen 10 mg tablet"), dose=mg(10), per_day=1, kind="MedicationStatement")
    albumin = med("alb", text("Albumin human 25% solution"))
    [card] = run("cirrhosis-cramps", cirrhosis(), cramp(), baclofen, *NORMAL)
    assert set(actions(card)) == set() and "Albumin: Human albumin 20-40 g" in card.detail
    assert run("cirrhosis-cramps", cirrhosis(), cramp(), baclofen, albumin, *NORMAL) == []
    [still] = run("cirrhosis-cramps", cirrhosis(), cramp(), baclofen, albumin, lab("k", K, 3.0, "mmol/L", 5),
                  NORMAL[1])
    assert still.indicator == "warning" and still.suggestions == []


def test_fibrosis_or_a_resolved_cirrhosis_is_not_cirrhosis():
    fibrosis = condition("fib", concept(ICD10CM, "K74.00", "Hepatic fibrosis, unspecified"))
    assert run("cirrhosis-cramps", fibrosis, cramp()) == []
    assert run("cirrhosis-cramps", cirrhosis(clinical="resolved"), cramp()) == []
    assert run("cirrhosis-cramps", cirrhosis()) == []


def test_twitching_without_a_cramp_gets_electrolytes_but_no_cramp_drugs():
    [card] = run("cirrhosis-cramps", cirrhosis(), twitch())
    assert set(actions(card)) == {"24321-2", "19123-9"} and "not offered" in card.detail
    assert run("cirrhosis-cramps", cirrhosis(), twitch(), *NORMAL) == []
