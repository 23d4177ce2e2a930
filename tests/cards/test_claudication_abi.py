"""claudication-abi: location of the twitching or cramp, what counts as claudication, the ABI window."""

from __future__ import annotations

from .fhir_builders import CPT, LOINC, SNOMED, concept, condition, order, run, site, twitch

CLAUDICATION = condition("ic", concept(SNOMED, "63491006", "Intermittent claudication"))
LEG = site(code="61685007")


def test_warning_with_an_abi_for_the_claudication_and_the_leg_finding():
    [card] = run("claudication-abi", twitch(bodySite=LEG), CLAUDICATION)
    assert card.indicator == "warning"
    resource = card.suggestions[0].actions[0].resource
    coding = resource["code"]["coding"][0]
    assert (coding["system"], coding["code"]) == (CPT, "93922")
    assert [r["reference"] for r in resource["reasonReference"]] == ["Condition/ic", "Condition/tw"]
    for pulse in ("femoral", "popliteal", "dorsalis pedis", "posterior tibial"):
        assert pulse in card.detail


def test_a_cramp_whose_code_names_the_leg_counts():
    cramp = condition("cr", concept(SNOMED, "449918009", "Cramp in lower leg"))
    assert run("claudication-abi", cramp, CLAUDICATION)


def test_unlocated_twitching_or_cramps_stay_silent():
    cramp = condition("cr", concept(SNOMED, "55300003", "Cramp"))
    assert run("claudication-abi", twitch(), cramp, CLAUDICATION) == []


def test_twitching_of_the_arm_stays_silent():
    assert run("claudication-abi", twitch(bodySite=site(text="left forearm")), CLAUDICATION) == []


def test_neurogenic_claudication_is_not_vascular():
    neurogenic = condition("nc", {"text": "Neurogenic claudication"})
    assert run("claudication-abi", twitch(bodySite=LEG), neurogenic) == []


def test_resolved_pad_does_not_count():
    pad = condition("pad", concept(SNOMED, "399957001", "Peripheral arterial occlusive disease"), clinical="resolved")
    assert run("claudication-abi", twitch(bodySite=LEG), pad) == []


def test_abi_report_inside_the_window_silences_and_the_window_is_a_setting():
    report = order("abi", concept(LOINC, "77194-9", "Ankle-brachial index"), 100, rtype="DiagnosticReport",
                   status="final")
    assert run("claudication-abi", twitch(bodySite=LEG), CLAUDICATION, report) == []
    assert run("claudication-abi", twitch(bodySite=LEG), CLAUDICATION, report, study_window_days=60)
    old = order("abi", concept(CPT, "93922"), 400, rtype="Procedure")
    assert run("claudication-abi", twitch(bodySite=LEG), CLAUDICATION, old)
