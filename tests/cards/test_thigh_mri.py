"""thigh-mri: window settings, what counts as a thigh MRI, and what does not place twitching in the thigh."""

from __future__ import annotations

from .fhir_builders import CPT, ICD10CM, LOINC, SNOMED, concept, condition, order, run, site, twitch

STRAIN = condition("hs", concept(SNOMED, "481000119104", "Strain of hamstring muscle"))
HAMSTRING = site(code="88225001")


def test_suggests_a_thigh_mri_for_the_twitching_and_the_strain():
    [card] = run("thigh-mri", twitch(bodySite=HAMSTRING), STRAIN)
    [suggestion] = card.suggestions
    resource = suggestion.actions[0].resource
    assert resource["code"]["coding"][0]["code"] == "24702-3"
    assert resource["category"][0]["coding"][0]["code"] == "363679005"  # imaging
    assert [r["reference"] for r in resource["reasonReference"]] == ["Condition/tw", "Condition/hs"]


def test_needs_an_injury_or_thigh_pain():
    assert run("thigh-mri", twitch(bodySite=HAMSTRING)) == []
    assert run("thigh-mri", twitch(bodySite=HAMSTRING),
               condition("tp", concept(ICD10CM, "M79.651", "Pain in right thigh")))


def test_entered_in_error_injury_does_not_count():
    wrong = {**STRAIN, "verificationStatus": concept(
        "http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error")}
    assert run("thigh-mri", twitch(bodySite=HAMSTRING), wrong) == []


def test_twitching_located_elsewhere_is_not_moved_by_the_strain():
    assert run("thigh-mri", twitch(bodySite=site(text="left eyelid")), STRAIN) == []
    assert run("thigh-mri", twitch(bodySite=site(text="left calf")), STRAIN) == []


def test_a_lower_extremity_mri_counts_as_done_and_the_window_is_a_setting():
    report = order("mri", concept(LOINC, "30692-8", "MR Lower extremity"), 60, rtype="DiagnosticReport",
                   status="final")
    assert run("thigh-mri", twitch(bodySite=HAMSTRING), STRAIN, report) == []
    assert run("thigh-mri", twitch(bodySite=HAMSTRING), STRAIN, report, study_window_days=30)


def test_an_active_mri_order_counts_and_a_cancelled_one_does_not():
    mri = concept(CPT, "73718", "MRI lower extremity other than joint; without contrast")
    assert run("thigh-mri", twitch(bodySite=HAMSTRING), STRAIN, order("sr", mri, 2, status="active")) == []
    assert run("thigh-mri", twitch(bodySite=HAMSTRING), STRAIN, order("sr", mri, 2, status="revoked"))
