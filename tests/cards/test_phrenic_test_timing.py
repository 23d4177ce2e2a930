"""phrenic-test-timing: which orders are phrenic tests, and the update it offers."""

from __future__ import annotations

from .fhir_builders import CPT, SNOMED, concept, draft, only_action, run


def test_update_keeps_the_draft_and_adds_the_note():
    test = draft("ph", {"text": "Twitch Pdi, bilateral"}, note=[{"text": "Inpatient, ward 4"}])
    [card] = run("phrenic-test-timing", drafts=(test,), selected=(test,))
    action = only_action(card)
    assert action.type == "update" and action.resource["id"] == "ph"
    assert action.resource["code"] == test["code"]
    assert [n["text"] for n in action.resource["note"]][0] == "Inpatient, ward 4"
    assert "15 minutes of quiet breathing" in action.resource["note"][1]["text"]
    assert test["note"] == [{"text": "Inpatient, ward 4"}]  # the draft itself is untouched


def test_a_patient_instruction_about_quiet_breathing_addresses_it():
    test = draft("ph", {"text": "Phrenic nerve stimulation"},
                 patientInstruction="Rest with quiet breathing for 15 minutes before the test.")
    assert run("phrenic-test-timing", drafts=(test,)) == []


def test_other_electrodiagnostic_orders_are_not_phrenic_tests():
    orders = (draft("emg", {"text": "EMG for muscle twitching"}),
              draft("ncs", concept(CPT, "95907", "Nerve conduction studies; 1-2 studies")),
              draft("ref", concept(SNOMED, "308474002", "Referral to neurologist")))
    assert run("phrenic-test-timing", drafts=orders) == []


def test_diaphragm_emg_coded_by_an_unknown_code_matches_by_display():
    test = draft("dia", {"coding": [{"system": "http://example.org/local", "code": "D-EMG",
                                     "display": "Diaphragm EMG"}]})
    [card] = run("phrenic-test-timing", drafts=(test,))
    assert card.indicator == "info" and "Diaphragm EMG" in card.detail
