"""radiculopathy-evaluation: which sensory changes count, leg location, the EMG window."""

from __future__ import annotations

from .fhir_builders import ICD10CM, SNOMED, concept, condition, order, run, site, twitch

SCIATICA = condition("sc", concept(ICD10CM, "M54.41", "Lumbago with sciatica, right side"))
LEG = site(text="right leg")
EMG = concept(SNOMED, "42803009", "Electromyography")


def test_suggests_emg_for_the_twitching_and_the_sciatica():
    [card] = run("radiculopathy-evaluation", twitch(bodySite=LEG), SCIATICA)
    assert card.indicator == "warning"
    resource = card.suggestions[0].actions[0].resource
    assert resource["code"]["coding"][0]["code"] == "42803009"
    assert [r["reference"] for r in resource["reasonReference"]] == ["Condition/tw", "Condition/sc"]
    assert "reflex" in card.detail


def test_unlocated_twitching_stays_silent():
    assert run("radiculopathy-evaluation", twitch(), SCIATICA) == []


def test_sensory_change_counts_unless_placed_outside_the_leg():
    numb = condition("nu", concept(ICD10CM, "R20.1", "Hypoesthesia of skin"))
    assert run("radiculopathy-evaluation", twitch(bodySite=LEG), numb)
    assert run("radiculopathy-evaluation", twitch(bodySite=LEG), {**numb, "bodySite": site(text="left foot")})
    assert run("radiculopathy-evaluation", twitch(bodySite=LEG), {**numb, "bodySite": site(text="left hand")}) == []


def test_emg_window_is_a_setting():
    done = order("emg", EMG, 400, rtype="Procedure")
    assert run("radiculopathy-evaluation", twitch(bodySite=LEG), SCIATICA, done)
    assert run("radiculopathy-evaluation", twitch(bodySite=LEG), SCIATICA, done, study_window_days=500) == []
    assert run("radiculopathy-evaluation", twitch(bodySite=LEG), SCIATICA,
               order("emg", EMG, 3, status="active")) == []
