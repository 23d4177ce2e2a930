"""Lab values as real labs report them, and results that are there but cannot be read."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from cdshooks.cards.clinical import latest_calcium, latest_lab
from cdshooks.cards.clinical.labs import range_low_text, read_value
from cdshooks.fhir.record import Record
from cdshooks.fhir.terminology import LOINC

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
K, MG, CA = "2823-3", "19123-9", "17861-6"


def obs(loinc: str, days_ago: float = 5, **value) -> dict:
    return {"resourceType": "Observation", "id": f"o{loinc}{days_ago}", "status": "final",
            "subject": {"reference": "Patient/p1"}, "code": {"coding": [{"system": LOINC, "code": loinc}]},
            "effectiveDateTime": (NOW - timedelta(days=days_ago)).isoformat(), **value}


def flagged(code: str) -> list[dict]:
    return [{"coding": [{"system": INTERP, "code": code}]}]


def latest(lab: str, *resources: dict):
    return latest_lab(Record("p1", list(resources), NOW), lab, NOW, 90)


@pytest.mark.parametrize("text, value, comparator, unit, flags", [
    ("<1.5", 1.5, "<", None, set()),
    ("> 10", 10.0, ">", None, set()),
    ("1.2 L", 1.2, None, None, {"L"}),
    ("3.1 mmol/L (L)", 3.1, None, "mmol/L", {"L"}),
    ("<=0,8 mg/dL", 0.8, "<=", "mg/dL", set()),
    ("\u2264 2", 2.0, "<=", None, set()),
])
def test_string_values_with_comparators_units_and_flags(text, value, comparator, unit, flags):
    reading = read_value({"valueString": text})
    assert (reading.value, reading.comparator, reading.unit, set(reading.flags)) == (value, comparator, unit, flags)


@pytest.mark.parametrize("raw", [{"valueString": "see comment"}, {"valueString": "1.2 3.4"},
                                 {"valueQuantity": {"value": math.nan}}, {"valueQuantity": {"value": "x"}},
                                 {"valueQuantity": {"value": 1e400}}, {"valueCodeableConcept": {"text": "haemolysed"}},
                                 {"valueQuantity": {"value": 2, "comparator": "ad"}}])
def test_values_that_cannot_be_read(raw):
    reading = read_value(raw)
    assert reading is not None and reading.value is None


def test_no_value_at_all_is_not_a_result():
    assert read_value({"dataAbsentReason": {"text": "haemolysed"}}) is None


def test_magnesium_below_1_5_is_low():
    result = latest("magnesium", obs(MG, valueString="<1.5 mg/dL"))
    assert result.low and result.readable and result.shown() == "<1.5 mg/dL"
    assert result.why_low == "below the default limit 1.7 mg/dL"


def test_potassium_below_5_cannot_be_told_low_or_normal():
    result = latest("potassium", obs(K, valueString="<5"))
    assert result is not None and not result.low and not result.judged and not result.readable


@pytest.mark.parametrize("quantity, low, judged", [
    ({"value": 3.0, "comparator": "<", "unit": "mmol/L"}, True, True),
    ({"value": 3.5, "comparator": "<", "unit": "mmol/L"}, True, True),     # below 3.5: low
    ({"value": 3.5, "comparator": "<=", "unit": "mmol/L"}, False, False),  # may be exactly 3.5
    ({"value": 3.6, "comparator": ">", "unit": "mmol/L"}, False, True),
    ({"value": 2.0, "comparator": ">", "unit": "mmol/L"}, False, False),
])
def test_quantity_comparators_are_bounds(quantity, low, judged):
    result = latest("potassium", obs(K, valueQuantity=quantity))
    assert (result.low, result.judged) == (low, judged)


def test_a_flag_decides_when_the_bound_cannot():
    result = latest("potassium", obs(K, valueString="<5", interpretation=flagged("L")))
    assert result.low and result.why_low == "flagged low"


def test_reference_range_given_as_text():
    assert range_low_text("3.5 - 5.1 mmol/L") == (3.5, "mmol/l")
    assert range_low_text(">=1.7 mg/dL") == (1.7, "mg/dl")
    assert range_low_text("normal") is None
    low = latest("potassium", obs(K, valueQuantity={"value": 3.6, "unit": "mmol/L"},
                                  referenceRange=[{"text": "3.7-5.2 mmol/L"}]))
    assert low.low and low.why_low == "below the reference range"


def test_an_unreadable_newest_result_is_the_latest_not_an_older_one():
    older_low = obs(K, 20, valueQuantity={"value": 3.0, "unit": "mmol/L"})
    garbage = obs(K, 2, valueQuantity={"value": "garbage", "unit": "mmol/L"})
    result = latest("potassium", older_low, garbage)
    assert result.value is None and not result.low and result.effective.date() == (NOW - timedelta(days=2)).date()


def test_results_inside_a_diagnostic_report_panel():
    report = {"resourceType": "DiagnosticReport", "id": "bmp", "status": "final",
              "subject": {"reference": "Patient/p1"}, "code": {"text": "BMP"},
              "effectiveDateTime": (NOW - timedelta(days=3)).isoformat(),
              "contained": [{"resourceType": "Observation", "id": "k", "status": "final",
                             "code": {"coding": [{"system": LOINC, "code": K}]},
                             "valueQuantity": {"value": 3.1, "unit": "mmol/L"}}],
              "result": [{"reference": "#k"}]}
    result = latest("potassium", report)
    assert result is not None and result.low and result.reference == "DiagnosticReport/bmp"


def test_results_inside_a_panel_observation():
    panel = obs("24321-2", 4, contained=[{"resourceType": "Observation", "id": "ca", "code": {"coding": [
        {"system": LOINC, "code": CA}]}, "valueString": "7.9 mg/dL L"}], hasMember=[{"reference": "#ca"}])
    result = latest_calcium(Record("p1", [panel], NOW), NOW, 90)
    assert result is not None and result.low and result.value == 7.9


def test_a_code_sent_as_a_list_of_one_is_still_matched():
    listed = obs(K, valueQuantity={"value": 3.1, "unit": "mmol/L"})
    listed["code"] = [listed["code"]]
    result = latest("potassium", listed)
    assert result is not None and result.low
