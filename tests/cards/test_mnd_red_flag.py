"""mnd-red-flag: the parts the scenarios do not reach (windows from settings, text-only orders, order content)."""

from __future__ import annotations

from .fhir_builders import (
    CPT,
    ICD10CM,
    PATIENT,
    SNOMED,
    codes,
    concept,
    created,
    draft,
    finding,
    order,
    run,
    twitch,
    valid,
    weakness,
)

REFERRAL = concept(SNOMED, "308474002", "Referral to neurologist")


def test_referral_is_urgent_and_names_both_findings():
    [card] = run("mnd-red-flag", twitch(), weakness())
    assert card.indicator == "critical"
    referral, emg = created(card)
    assert referral["priority"] == "urgent" and referral["status"] == "draft" and referral["intent"] == "proposal"
    assert referral["category"][0]["coding"][0]["code"] == "3457005"
    assert {r["reference"] for r in referral["reasonReference"]} == {"Condition/tw", "Condition/wk"}
    assert emg["code"]["coding"][0]["code"] == "42803009"
    assert valid(card)


def test_referral_window_comes_from_settings():
    record = (twitch(), weakness(), order("ref", REFERRAL, 30))
    assert "308474002" not in codes(run("mnd-red-flag", *record)[0])
    assert "308474002" in codes(run("mnd-red-flag", *record, referral_window_days=14)[0])


def test_atrophy_alone_counts_and_a_negated_weakness_does_not():
    atrophy = {"resourceType": "Condition", "id": "at", "subject": PATIENT,
               "code": concept(ICD10CM, "M62.50")}
    assert run("mnd-red-flag", twitch(), atrophy)
    absent = finding("wk-obs", concept(SNOMED, "26544005"), valueBoolean=False)
    assert run("mnd-red-flag", twitch(), absent) == []


def test_a_motor_neuron_disease_diagnosis_by_icd_prefix_silences_it():
    pls = {"resourceType": "Condition", "id": "pls", "subject": PATIENT,
           "code": concept(ICD10CM, "G1223")}  # undotted ICD-10-CM, primary lateral sclerosis
    assert run("mnd-red-flag", twitch(), weakness(), pls) == []


def test_order_hook_text_only_nerve_conduction_order_fires_with_the_referral_only():
    ncs = draft("ncs", {"text": "Nerve conduction velocity, both legs"})
    [card] = run("mnd-red-flag", twitch(), weakness(), drafts=(ncs,))
    assert card.summary.startswith("Do not let the EMG delay the urgent neurology referral")
    assert codes(card) == {"308474002"}
    assert "Nerve conduction velocity, both legs" in card.detail


def test_order_hook_needs_an_emg_order_and_the_findings():
    emg = draft("emg", concept(CPT, "95886"))
    lab = draft("lab", {"text": "Basic metabolic panel"})
    assert run("mnd-red-flag", twitch(), weakness(), drafts=(lab, emg), selected=(lab,)) == []
    assert run("mnd-red-flag", twitch(), drafts=(emg,), selected=(emg,)) == []


def test_order_hook_an_old_referral_does_not_count():
    emg = draft("emg", concept(CPT, "95886"))
    record = (twitch(), weakness(), order("ref", REFERRAL, 200))
    assert run("mnd-red-flag", *record, drafts=(emg,), selected=(emg,))
    record = (twitch(), weakness(), order("ref", REFERRAL, 20, status="active"))
    assert run("mnd-red-flag", *record, drafts=(emg,), selected=(emg,)) == []
