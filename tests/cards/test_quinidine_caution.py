"""quinidine-caution: info for any quinidine order, a warning above 400 mg/day, quinine is not quinidine."""

from __future__ import annotations

from .fhir_builders import RXNORM, concept, med_draft, mg, run, rx, tablets, text

GLUCONATE = rx("852920", "quinidine gluconate 324 MG Extended Release Oral Tablet")


def test_above_400_mg_a_day_is_a_warning_with_the_computed_dose():
    [card] = run("quinidine-caution", drafts=(med_draft("q", GLUCONATE, dose=tablets(1), per_day=3),))
    assert card.indicator == "warning" and "972 mg/day" in card.detail and card.suggestions == []
    assert "one-third" in card.detail


def test_at_or_below_400_or_unknown_is_info():
    [at] = run("quinidine-caution", drafts=(med_draft("q", text("quinidine sulfate 200 mg"), dose=mg(200), per_day=2),))
    assert at.indicator == "info" and "400 mg/day" in at.detail
    [unknown] = run("quinidine-caution", drafts=(med_draft("q", rx("852877"), per_day=2),))
    assert unknown.indicator == "info" and "not computable" in unknown.detail


def test_one_card_per_quinidine_order_and_a_contained_medication_counts():
    contained = med_draft("c", {"medicationReference": {"reference": "#m"}}, dose=mg(300), per_day=2,
                      contained=[{"resourceType": "Medication", "id": "m", "code": concept(RXNORM, "9068")}])
    cards = run("quinidine-caution", drafts=(contained, med_draft("q", GLUCONATE, dose=tablets(1), per_day=1)))
    assert [c.indicator for c in cards] == ["warning", "info"]


def test_quinine_and_unselected_orders_are_not_judged():
    quinine = med_draft("qn", text("Quinine sulfate 324 mg capsule"), dose=mg(324), per_day=3)
    quinidine = med_draft("q", GLUCONATE, dose=tablets(1), per_day=3)
    assert run("quinidine-caution", drafts=(quinine,)) == []
    assert run("quinidine-caution", drafts=(quinine, quinidine), selected=(quinine,)) == []


def test_every_card_names_qt_prolongation_and_proarrhythmia():
    [card] = run("quinidine-caution", drafts=(med_draft("q", text("quinidine sulfate 200 mg"), dose=mg(200),
                                                        per_day=2),))
    assert "QT" in card.summary and "prolongs the QT interval" in card.detail and "proarrhythmia" in card.detail


def test_a_sulfate_code_shared_by_two_strengths_is_computed_for_both():
    two_a_day = med_draft("q", rx("852877", "quinidine sulfate oral tablet"), dose=tablets(1), per_day=2)
    [card] = run("quinidine-caution", drafts=(two_a_day,))  # 400 or 600 mg/day
    assert card.indicator == "warning" and "400-600 mg/day" in card.detail and "check the strength" in card.detail
    [low] = run("quinidine-caution", drafts=(med_draft("q", rx("852913"), dose=tablets(1), per_day=1),))
    assert low.indicator == "info" and "200-300 mg/day" in low.detail
    [high] = run("quinidine-caution", drafts=(med_draft("q", rx("852913"), dose=tablets(1), per_day=3),))
    assert high.indicator == "warning" and "600-900 mg/day" in high.summary
