"""Labs coded only by a local code (an Epic-style ``urn:oid:`` system, display "MAGNESIUM", no LOINC): they
cannot be matched as the lab (their value is never used), but no card says "No magnesium result" beside one."""

from __future__ import annotations

import pytest

from cdshooks.cards.clinical import lab_absent, latest_lab
from cdshooks.fhir.record import Record

from .fhir_builders import LOINC, NOW, PATIENT, ago, lab, run, twitch

EPIC_LAB = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.24"


def epic_magnesium(days_ago: float = 5, **changes) -> dict:
    """An Epic-shaped magnesium result: the local component code and its display, no LOINC."""
    res = {"resourceType": "Observation", "id": "epic-mg", "status": "final", "subject": PATIENT,
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}], "text": "Laboratory"}],
           "code": {"coding": [{"system": EPIC_LAB, "code": "1558024", "display": "MAGNESIUM"}], "text": "MAGNESIUM"},
           "effectiveDateTime": ago(days_ago), "issued": ago(days_ago),
           "valueQuantity": {"value": 1.2, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
           "referenceRange": [{"text": "1.6 - 2.6 mg/dL"}]}
    res.update(changes)
    return res


def record(*resources: dict) -> Record:
    return Record("p1", list(resources), NOW)


def test_a_local_only_magnesium_is_not_matched_but_leaves_magnesium_in_doubt():
    rec = record(epic_magnesium())
    assert latest_lab(rec, "magnesium", NOW, 90) is None       # its value (1.2, low) is never used
    assert not lab_absent(rec, "magnesium", NOW, 90)           # nor is magnesium called absent
    assert lab_absent(record(), "magnesium", NOW, 90)
    assert lab_absent(rec, "potassium", NOW, 90)               # it says nothing of potassium


@pytest.mark.parametrize("changes", [
    {"code": {"coding": [{"system": EPIC_LAB, "code": "1558024", "display": "MAGNESIUM"}]}},   # display only
    {"code": {"text": "Magnesium, serum"}},                                                     # text only
    {"code": {"coding": [{"system": EPIC_LAB, "code": "1558024"}], "text": "MAGNESIUM"}},      # code + text
    {"status": "unknown"}, {"effectiveDateTime": "yesterday", "issued": None},                  # doubt on doubt
])
def test_shapes_that_name_magnesium_leave_it_in_doubt(changes):
    assert not lab_absent(record(epic_magnesium(**changes)), "magnesium", NOW, 90)


@pytest.mark.parametrize("changes", [
    {"effectiveDateTime": ago(400), "issued": ago(400)},              # long before the window
    {"status": "cancelled"}, {"status": "entered-in-error"},        # plainly not a result
    {"code": {"coding": [{"system": EPIC_LAB, "code": "1558011", "display": "POTASSIUM"}]}},  # another lab
])
def test_a_local_result_that_cannot_be_a_recent_magnesium_leaves_no_doubt(changes):
    res = epic_magnesium(**changes)
    res.pop("issued", None) if "issued" in changes else None
    assert lab_absent(record(res), "magnesium", NOW, 90)


def test_a_local_magnesium_inside_a_panel_leaves_magnesium_in_doubt():
    member = {k: v for k, v in epic_magnesium().items() if k not in ("subject", "effectiveDateTime", "issued")}
    member["id"] = "m1"
    report = {"resourceType": "DiagnosticReport", "id": "panel", "status": "final", "subject": PATIENT,
              "code": {"coding": [{"system": EPIC_LAB, "code": "90210", "display": "BMP + MG"}]},
              "effectiveDateTime": ago(3), "contained": [member], "result": [{"reference": "#m1"}]}
    assert not lab_absent(record(report), "magnesium", NOW, 90)


def test_electrolyte_check_does_not_call_a_local_magnesium_missing():
    k = lab("k", "2823-3", 4.1, "mmol/L", 5)
    ca = lab("ca", "17861-6", 9.4, "mg/dL", 5)
    [card] = run("electrolyte-check", twitch(), k, ca)
    assert "No magnesium result" in card.detail                 # the negative: nothing names magnesium
    assert run("electrolyte-check", twitch(), k, ca, epic_magnesium()) == []  # in doubt: no "no result" card
    k_only = run("electrolyte-check", twitch(), k, epic_magnesium())
    [card] = k_only
    assert "No calcium result" in card.detail and "No magnesium" not in card.detail  # only what is missing
    assert "magnesium" not in card.summary


def test_a_loinc_coded_result_beside_a_local_code_is_matched():
    coded = epic_magnesium()
    coded["code"]["coding"].append({"system": LOINC, "code": "19123-9"})
    found = latest_lab(record(coded), "magnesium", NOW, 90)
    assert found is not None and found.low
