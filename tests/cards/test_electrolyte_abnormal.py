"""electrolyte-abnormal: which latest values are low, how they are named, and when a repeat is suggested."""

from __future__ import annotations

from .fhir_builders import LOINC, ago, codes, concept, cramp, lab, order, run, twitch, valid

K, MG, CA, CA_ION, ALB = "2823-3", "19123-9", "17861-6", "1994-3", "1751-7"
LOW_K = {"interpretation": [concept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "L")]}


def test_a_fresh_low_value_is_named_with_its_date_and_reason_and_not_repeated():
    [card] = run("electrolyte-abnormal", twitch(), lab("k", K, 3.1, "mmol/L", 3, **LOW_K))
    assert card.indicator == "warning" and card.suggestions == []
    assert f"Potassium 3.1 mmol/L on {ago(3)[:10]} (flagged low)" in card.detail
    assert "potassium" in card.summary


def test_a_low_value_older_than_the_repeat_setting_gets_its_own_repeat_order():
    [card] = run("electrolyte-abnormal", cramp(), lab("k", K, 3.0, "mmol/L", 10), lab("mg", MG, 1.2, "mg/dL", 10))
    assert codes(card) == {"24321-2", "19123-9"} and valid(card)
    assert "below the default limit 3.5 mmol/L" in card.detail and "below the default limit 1.7 mg/dL" in card.detail
    [only_mg] = run("electrolyte-abnormal", cramp(), lab("k", K, 3.0, "mmol/L", 2), lab("mg", MG, 1.2, "mg/dL", 10))
    assert codes(only_mg) == {"19123-9"}
    [none] = run("electrolyte-abnormal", cramp(), lab("mg", MG, 1.2, "mg/dL", 10), repeat_lab_after_days=14)
    assert none.suggestions == []


def test_only_an_order_after_the_low_value_counts_as_its_repeat():
    low = lab("k", K, 3.0, "mmol/L", 20)
    same_day = order("bmp", concept(LOINC, "24321-2"), 20, rtype="DiagnosticReport", status="final")
    [card] = run("electrolyte-abnormal", cramp(), low, same_day)
    assert codes(card) == {"24321-2"}
    repeat = order("bmp2", concept(LOINC, "24321-2"), 5, status="active")
    [card] = run("electrolyte-abnormal", cramp(), low, repeat)
    assert card.suggestions == [] and "already ordered or resulted" in card.detail


def test_the_latest_value_decides():
    older_low, newer_normal = lab("k1", K, 3.0, "mmol/L", 30), lab("k2", K, 4.0, "mmol/L", 5)
    assert run("electrolyte-abnormal", cramp(), older_low, newer_normal) == []


def test_values_outside_the_recent_window_do_not_count():
    old = lab("k", K, 2.8, "mmol/L", 120)
    assert run("electrolyte-abnormal", cramp(), old) == []
    assert run("electrolyte-abnormal", cramp(), old, lab_recent_days=180)


def test_an_unknown_unit_is_judged_only_by_range_or_flag():
    bare = lab("k", K, 3.0, "mmol/kg", 2)
    assert run("electrolyte-abnormal", cramp(), bare) == []
    ranged = lab("k", K, 3.0, "mmol/kg", 2, referenceRange=[{"low": {"value": 3.4, "unit": "mmol/kg"}}])
    [card] = run("electrolyte-abnormal", cramp(), ranged)
    assert "(below the reference range 3.4 mmol/kg)" in card.detail
    assert run("electrolyte-abnormal", cramp(), lab("k", K, 3.0, "mmol/kg", 2, **LOW_K))


def test_calcium_is_corrected_for_albumin_and_ionized_calcium_counts():
    total, albumin = lab("ca", CA, 8.2, "mg/dL", 2, **LOW_K), lab("alb", ALB, 3.0, "g/dL", 3)
    assert run("electrolyte-abnormal", cramp(), total, albumin) == []
    [card] = run("electrolyte-abnormal", cramp(), total)
    assert "Calcium 8.2 mg/dL" in card.detail
    [ionized] = run("electrolyte-abnormal", cramp(), lab("ica", CA_ION, 1.0, "mmol/L", 2))
    assert "Ionized calcium 1 mmol/L" in ionized.detail and "ionized calcium" in ionized.summary


def test_no_present_twitching_or_cramp_means_no_card():
    low = lab("k", K, 3.0, "mmol/L", 2)
    assert run("electrolyte-abnormal", low) == []
    assert run("electrolyte-abnormal", cramp(clinical="resolved"), low) == []
    refuted = twitch(verificationStatus=concept("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                                "refuted"))
    assert run("electrolyte-abnormal", refuted, low) == []
