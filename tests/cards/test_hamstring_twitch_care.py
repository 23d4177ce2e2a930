"""hamstring-twitch-care: what the scenarios do not reach (settings, every silencing rule, sites)."""

from __future__ import annotations

import pytest

from cdshooks.cards.hamstring_twitch_care import SILENCED_BY

from .fhir_builders import ICD10CM, PATIENT, SNOMED, concept, condition, lab, run, site, twitch

HAMSTRING = site(code="88225001")
STRAIN = condition("hs", concept(ICD10CM, "S76.311A", "Strain of hamstring, right thigh"))


def codes(card) -> list[str]:
    return [a.resource["code"]["coding"][0]["code"] for s in card.suggestions for a in s.actions]


def test_fires_with_both_labs_and_reasons_pointing_at_the_twitching():
    [card] = run("hamstring-twitch-care", twitch(bodySite=HAMSTRING))
    assert card.indicator == "info"
    assert codes(card) == ["24321-2", "19123-9"]
    for s in card.suggestions:
        assert s.actions[0].resource["reasonReference"] == [{"reference": "Condition/tw",
                                                             "display": "Muscle fasciculation"}]
        assert s.actions[0].resource["status"] == "draft"


@pytest.mark.parametrize("rule_id", SILENCED_BY)
def test_silent_when_a_red_flag_or_the_emg_card_fired(rule_id):
    assert run("hamstring-twitch-care", twitch(bodySite=HAMSTRING), fired=(rule_id,)) == []


def test_persistent_days_setting_is_honoured():
    tw = twitch(bodySite=HAMSTRING, onset_days=20)
    assert run("hamstring-twitch-care", tw)
    assert run("hamstring-twitch-care", tw, persistent_days=14) == []


def test_undated_twitching_is_not_persistent():
    tw = twitch(bodySite=HAMSTRING)
    del tw["onsetDateTime"]
    assert run("hamstring-twitch-care", tw)


def test_lab_recent_days_setting_is_honoured():
    labs = (lab("k", "2823-3", 4.1, "mmol/L", 100), lab("ca", "17861-6", 9.3, "mg/dL", 100),
            lab("mg", "19123-9", 2.0, "mg/dL", 100))
    [card] = run("hamstring-twitch-care", twitch(bodySite=HAMSTRING), *labs)
    assert codes(card) == ["24321-2", "19123-9"]
    [card] = run("hamstring-twitch-care", twitch(bodySite=HAMSTRING), *labs, lab_recent_days=120)
    assert codes(card) == []
    assert "Magnesium 2 mg/dL" in card.detail and "check" not in card.summary


def test_ionized_calcium_with_potassium_covers_the_panel():
    [card] = run("hamstring-twitch-care", twitch(bodySite=HAMSTRING), lab("k", "2823-3", 4.0, "mmol/L", 5),
                 lab("ica", "47596-2", 1.2, "mmol/L", 5))
    assert codes(card) == ["19123-9"]
    assert card.summary.endswith("check magnesium")


def test_twitching_recorded_beyond_the_lower_limb_silences_it():
    eyelid = twitch("tw2", bodySite=site(text="right upper eyelid"))
    assert run("hamstring-twitch-care", twitch(bodySite=HAMSTRING), eyelid) == []
    assert run("hamstring-twitch-care", twitch(bodySite=HAMSTRING), twitch("tw2"))  # no site: not "elsewhere"


@pytest.mark.parametrize("where", [site(text="left calf"), site(code="72696002"), site(text="Right foot")])
def test_a_hamstring_strain_does_not_move_lower_leg_twitching_into_the_thigh(where):
    assert run("hamstring-twitch-care", twitch(bodySite=where), STRAIN) == []


@pytest.mark.parametrize("where", [site(text="left quadriceps"), site(code="68367000"), site(text="thigh and calf")])
def test_the_whole_thigh_counts(where):
    assert run("hamstring-twitch-care", twitch(bodySite=where))


def test_unlocated_twitching_is_placed_by_a_hamstring_strain():
    [card] = run("hamstring-twitch-care", twitch(), STRAIN)
    assert "placed in the thigh by Strain of hamstring, right thigh" in card.detail
    assert run("hamstring-twitch-care", twitch()) == []
    assert run("hamstring-twitch-care", twitch(), condition("hs", STRAIN["code"], clinical="resolved")) == []


def test_thigh_pain_observation_places_it_too():
    pain = {"resourceType": "Observation", "id": "tp", "status": "final", "subject": PATIENT,
            "code": concept(SNOMED, "78514002", "Thigh pain"), "effectiveDateTime": "2026-02-25"}
    assert run("hamstring-twitch-care", twitch(), pain)
    assert run("hamstring-twitch-care", twitch(), {**pain, "valueBoolean": False}) == []


def test_a_bare_coded_body_site_is_named_by_its_display():
    [card] = run("hamstring-twitch-care", twitch(bodySite=HAMSTRING))
    assert "body site Hamstring muscle structure" in card.detail
