"""drug-induced-twitching: irinotecan with twitching, and which companions make it a warning."""

from __future__ import annotations

from .fhir_builders import RXNORM, concept, med, run, rx, text, twitch

IRINOTECAN = med("iri", rx("1726319", "2 ML irinotecan hydrochloride 20 MG/ML Injection"))


def test_info_when_irinotecan_has_no_interacting_companion():
    [card] = run("drug-induced-twitching", twitch(), IRINOTECAN, med("fur", rx("4603", "furosemide")))
    assert card.indicator == "info" and card.suggestions == []
    assert "2 ML irinotecan" in card.detail and "predictable onset and duration" in card.detail


def test_each_strong_pathway_is_named():
    cases = {
        "ketoconazole": (text("Ketoconazole 200 mg tablet"), "strong CYP3A4 inhibitor"),
        "phenytoin": (rx("855671", "phenytoin sodium 100 MG Extended Release Oral Capsule"), "strong CYP3A4 inducer"),
        "atazanavir": (rx("343047", "atazanavir"), "UGT1A1 inhibitor"),
    }
    for name, (medication, pathway) in cases.items():
        [card] = run("drug-induced-twitching", twitch(), IRINOTECAN, med("x", medication, kind="MedicationStatement"))
        assert card.indicator == "warning", name
        assert name in card.summary and pathway in card.detail, card.detail


def test_a_drug_in_two_classes_names_both_pathways():
    [card] = run("drug-induced-twitching", twitch(), IRINOTECAN, med("ind", text("indinavir 400 mg capsule")))
    assert "strong CYP3A4 inhibitor" in card.detail and "UGT1A1 inhibitor" in card.detail


def test_moderate_cyp3a4_agents_make_it_a_warning_named_as_moderate():
    [card] = run("drug-induced-twitching", twitch(), IRINOTECAN, med("efv", rx("195085", "efavirenz")))
    assert card.indicator == "warning" and "moderate CYP3A4 inducer" in card.detail


def test_irinotecan_in_a_contained_medication_counts():
    contained = med("iri", {"medicationReference": {"reference": "#m"}},
                    contained=[{"resourceType": "Medication", "id": "m", "code": concept(RXNORM, "51499")}])
    assert run("drug-induced-twitching", twitch(), contained)


def test_silent_without_active_irinotecan_or_present_twitching():
    stopped = med("iri", rx("51499"), status="stopped")
    partner = med("k", text("ketoconazole"))
    assert run("drug-induced-twitching", twitch(), stopped, partner) == []
    assert run("drug-induced-twitching", IRINOTECAN, partner) == []
    assert run("drug-induced-twitching", twitch(clinical="resolved"), IRINOTECAN, partner) == []
