"""electrolyte-check: which electrolytes count as missing, which orders follow, and when it defers."""

from __future__ import annotations

from .fhir_builders import CPT, LOINC, codes, concept, cramp, lab, order, run, twitch, valid

K, MG, CA, CA_ION = "2823-3", "19123-9", "17861-6", "1994-3"


def test_no_results_suggests_the_bmp_and_magnesium():
    [card] = run("electrolyte-check", twitch())
    assert card.indicator == "info" and valid(card)
    assert codes(card) == {"24321-2", "19123-9"}
    assert "No potassium, magnesium or calcium result in the last 90 days" in card.detail
    assert all(a.resource["reasonReference"] == [{"reference": "Condition/tw", "display": "Muscle fasciculation"}]
               for s in card.suggestions for a in s.actions)


def test_only_the_missing_test_is_ordered():
    [card] = run("electrolyte-check", cramp(), lab("k", K, 4.0, "mmol/L", 5), lab("ca", CA, 9.5, "mg/dL", 5))
    assert codes(card) == {"19123-9"} and "check magnesium" in card.summary
    [card] = run("electrolyte-check", cramp(), lab("mg", MG, 2.0, "mg/dL", 5), lab("k", K, 4.0, "mmol/L", 5))
    assert codes(card) == {"24321-2"} and "No calcium result" in card.detail


def test_all_three_recent_is_silent_whatever_the_values():
    labs = (lab("k", K, 3.0, "mmol/L", 5), lab("mg", MG, 2.0, "mg/dL", 5), lab("ica", CA_ION, 1.2, "mmol/L", 5))
    assert run("electrolyte-check", cramp(), *labs) == []


def test_a_result_outside_the_window_is_missing_and_the_window_is_a_setting():
    labs = (lab("k", K, 4.0, "mmol/L", 100), lab("mg", MG, 2.0, "mg/dL", 100), lab("ca", CA, 9.5, "mg/dL", 100))
    assert run("electrolyte-check", cramp(), *labs)
    assert run("electrolyte-check", cramp(), *labs, lab_recent_days=120) == []


def test_orders_already_placed_are_not_suggested_again():
    bmp = order("bmp", concept(LOINC, "24321-2"), 10, status="active")
    mg_cpt = order("mg", concept(CPT, "83735"), 10, rtype="Procedure")
    [card] = run("electrolyte-check", cramp(), bmp)
    assert codes(card) == {"19123-9"} and "basic metabolic panel test is already ordered" in card.detail
    assert run("electrolyte-check", cramp(), bmp, mg_cpt) == []
    old = order("bmp", concept(LOINC, "24321-2"), 200)
    assert codes(run("electrolyte-check", cramp(), old)[0]) == {"24321-2", "19123-9"}


def test_defers_to_hamstring_twitch_care_and_needs_a_symptom():
    assert run("electrolyte-check", twitch(), fired=("hamstring-twitch-care",)) == []
    assert run("electrolyte-check") == []
    assert run("electrolyte-check", cramp(clinical="inactive")) == []


def test_eyelid_twitching_alone_does_not_start_the_work_up():
    eyelid = twitch(bodySite=[{"text": "Right upper eyelid"}])
    assert run("electrolyte-check", eyelid) == []
    [card] = run("electrolyte-check", eyelid, cramp())
    assert codes(card) == {"24321-2", "19123-9"}
