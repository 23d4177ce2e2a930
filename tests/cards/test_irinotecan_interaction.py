"""irinotecan-interaction: the pairs that fire, the delete suggestion, and what stays silent."""

from __future__ import annotations

from .fhir_builders import med, med_draft, run, rx, text

IRINOTECAN = med("iri", rx("51499", "irinotecan"))
RIFAMPIN = rx("198201", "rifampin 150 MG Oral Capsule")


def deleted(card) -> list[str]:
    return [a.resource_id for s in card.suggestions for a in s.actions if a.type == "delete"]


def test_a_partner_ordered_while_irinotecan_is_active():
    [card] = run("irinotecan-interaction", IRINOTECAN, drafts=(med_draft("r", RIFAMPIN),))
    assert card.indicator == "warning" and deleted(card) == ["MedicationRequest/r"]
    assert "rifampin" in card.summary.lower() and "strong CYP3A4 inducer" in card.detail
    assert "lowers SN-38 exposure" in card.detail and "Irinotecan active: irinotecan" in card.detail


def test_irinotecan_ordered_while_a_partner_is_active():
    partner = med("ata", rx("343047", "atazanavir"), kind="MedicationStatement")
    [card] = run("irinotecan-interaction", partner, drafts=(med_draft("i", rx("1726324")),))
    assert deleted(card) == ["MedicationRequest/i"] and "UGT1A1 inhibitor" in card.detail
    assert "atazanavir" in card.summary


def test_a_pair_of_drafts_gives_one_card_on_the_partner():
    drafts = (med_draft("i", rx("51499")), med_draft("k", text("ketoconazole 200 mg")))
    cards = run("irinotecan-interaction", drafts=drafts)
    assert [deleted(c) for c in cards] == [["MedicationRequest/k"]]
    assert "Irinotecan also ordered" in cards[0].detail


def test_order_select_judges_only_the_selection():
    drafts = (med_draft("i", rx("51499")), med_draft("k", text("ketoconazole 200 mg")))
    assert run("irinotecan-interaction", drafts=drafts, selected=(drafts[0],)) == []


def test_silent_for_moderate_agents_stopped_drugs_and_unrelated_orders():
    assert run("irinotecan-interaction", IRINOTECAN, drafts=(med_draft("e", rx("4053", "erythromycin")),)) == []
    stopped = med("iri", rx("51499"), status="stopped")
    assert run("irinotecan-interaction", stopped, drafts=(med_draft("r", RIFAMPIN),)) == []
    assert run("irinotecan-interaction", IRINOTECAN, drafts=(med_draft("f", rx("4603", "furosemide")),)) == []
    done = med("k", text("ketoconazole"), status="completed", kind="MedicationStatement")
    assert run("irinotecan-interaction", done, drafts=(med_draft("i", rx("51499")),)) == []
