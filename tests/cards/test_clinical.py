"""The catalogue's shared definitions (RULES.md section 1) as implemented by ``cdshooks.clinical``.

Every test builds a small Record by hand; each trap the catalogue names has its own test.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdshooks.cards.clinical import (
    active_medications,
    already_done,
    calcium_low,
    daily_dose_mg,
    findings,
    in_lower_limb,
    in_thigh,
    ingredient_names,
    is_order_for,
    latest_calcium,
    latest_lab,
    lgi1_positive,
    lgi1_results,
    medication_of,
    onset,
    order_codes,
    parse_when,
    using,
    within,
)
from cdshooks.fhir.record import Record, flatten
from cdshooks.fhir.terminology import ICD10CM, LOINC, RXNORM, SNOMED, UCUM, Product

from .fhir_builders import concept

UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PATIENT = {"reference": "Patient/p1"}
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CPT = "http://www.ama-assn.org/go/cpt"


def day(days_ago: float) -> str:
    """An ISO instant ``days_ago`` days before NOW."""
    return (NOW - timedelta(days=days_ago)).isoformat()


def record(*resources: dict) -> Record:
    return Record("p1", list(resources), NOW)


def condition(rid: str, code: dict, *, clinical: str | None = "active", verification: str | None = "confirmed",
              **extra) -> dict:
    res = {"resourceType": "Condition", "id": rid, "subject": PATIENT, "code": code, **extra}
    if clinical:
        res["clinicalStatus"] = concept("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical)
    if verification:
        res["verificationStatus"] = concept("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                            verification)
    return res


def twitch(rid: str = "tw", **extra) -> dict:
    return condition(rid, concept(SNOMED, "82470000", "Muscle fasciculation"), **extra)


def exam(rid: str, code: dict, status: str = "final", **extra) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": status, "subject": PATIENT, "code": code,
            "effectiveDateTime": day(10), **extra}


def lab(rid: str, loinc: str, value: float, unit: str | None, days_ago: float = 5, status: str = "final",
        **extra) -> dict:
    quantity: dict = {"value": value}
    if unit:
        quantity.update(unit=unit, system=UCUM, code=unit)
    return {"resourceType": "Observation", "id": rid, "status": status, "subject": PATIENT,
            "code": concept(LOINC, loinc), "effectiveDateTime": day(days_ago), "valueQuantity": quantity, **extra}


def low_range(value: float, unit: str | None) -> list[dict]:
    low: dict = {"value": value}
    if unit:
        low.update(unit=unit, system=UCUM, code=unit)
    return [{"low": low}]


def flag(code: str) -> list[dict]:
    return [concept(INTERP, code)]


# -- dates ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2025", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-03", datetime(2025, 3, 1, tzinfo=UTC)),
    ("2025-03-07", datetime(2025, 3, 7, tzinfo=UTC)),
    ("2025-03-07T10:30:00+02:00", datetime(2025, 3, 7, 8, 30, tzinfo=UTC)),
    ("2025-03-07T10:30:00Z", datetime(2025, 3, 7, 10, 30, tzinfo=UTC)),
    ("2025-03-07T10:30:00.123456Z", datetime(2025, 3, 7, 10, 30, 0, 123456, tzinfo=UTC)),
    ("2025-03-07T10:30:00.123456789+00:00", datetime(2025, 3, 7, 10, 30, 0, 123456, tzinfo=UTC)),
    ("2025-03-07T10:30:00", datetime(2025, 3, 7, 10, 30, tzinfo=UTC)),
    (date(2025, 3, 7), datetime(2025, 3, 7, tzinfo=UTC)),
    ("2025-02-30", None), ("yesterday", None), ("", None), (None, None), (20250307, None),
], ids=str)
def test_parse_when(value, expected):
    assert parse_when(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.one_of(st.none(), st.timezones())),
       st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"]),
       st.sampled_from(["T", " "]), st.booleans(), st.text(alphabet="0123456789+-:.TZz ", max_size=6))
def test_parse_when_reads_as_sent_exactly_as_every_step_would(when, spec, sep, zulu, junk):
    """The fast reading (``fromisoformat`` at once) gives what the full steps give, on every shape it accepts."""
    from cdshooks.cards.clinical import dates

    text = when.isoformat(sep=sep, timespec=spec)
    if zulu and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    for value in (text, text + junk, junk + text, text[:10], text[:7], text[:4], text[:len(text) - len(junk)]):
        fast, full = dates.parse_text(value), dates._read_text(value)
        assert fast == full, value
        assert fast is None or (fast.tzinfo, fast.isoformat()) == (timezone.utc, full.isoformat()), value


def test_within_is_inclusive_and_tolerates_one_day_ahead():
    assert within(NOW - timedelta(days=90), NOW, 90)
    assert not within(NOW - timedelta(days=90, seconds=1), NOW, 90)
    assert within(NOW + timedelta(hours=20), NOW, 90)
    assert not within(NOW + timedelta(days=2), NOW, 90)
    assert not within(None, NOW, 90)


# -- findings: conditions ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, present", [
    ({}, True),
    ({"clinical": None}, True),                              # absent clinicalStatus counts
    ({"verification": None}, True),
    ({"verification": "unconfirmed"}, True),
    ({"clinical": "recurrence"}, True),
    ({"clinical": "relapse"}, True),
    ({"verification": "refuted"}, False),
    ({"verification": "entered-in-error"}, False),
    ({"clinical": "resolved", "abatementDateTime": day(3)}, False),
    ({"clinical": "inactive"}, False),
    ({"clinical": "remission"}, False),
    ({"abatementDateTime": day(3)}, False),                   # active but abated
    ({"clinical": None, "abatementString": "last spring"}, False),
    ({"abatementDateTime": (NOW + timedelta(days=30)).isoformat()}, True),  # abates in the future
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v))
def test_condition_presence(kwargs, present):
    assert bool(findings(record(twitch(**kwargs)), "fasciculation")) is present


def test_icd10_with_and_without_dot():
    dotted = condition("a", concept(ICD10CM, "R25.3"))
    bare = condition("b", concept(ICD10CM, "R253"))
    assert [f.reference for f in findings(record(dotted, bare), "fasciculation")] == ["Condition/a", "Condition/b"]


def test_condition_missing_a_required_element_is_still_read_and_counted():
    broken = twitch("bad")
    del broken["subject"]  # Condition.subject is required, but no rule reads it
    rec = record(broken, twitch("good"))
    assert [f.reference for f in findings(rec, "fasciculation")] == ["Condition/bad", "Condition/good"]
    assert rec.invalid == 1 and rec.problems == ["Condition.subject: missing"]


def test_malformed_codings_never_raise_and_the_readable_part_still_matches():
    listed = twitch("listed")
    listed["code"]["coding"][0]["system"] = [SNOMED]          # a one-item list where a string belongs
    listed["code"]["coding"][0]["code"] = ["82470000"]
    odd = condition("odd", {"coding": [{"system": {"url": SNOMED}, "code": 82470000}, 5, "x"]})
    lone = condition("lone", {"coding": {"system": SNOMED, "code": "82470000"}})  # one Coding, not a list
    rec = record(listed, odd, lone)
    assert [f.reference for f in findings(rec, "fasciculation")] == ["Condition/listed", "Condition/lone"]
    assert "Condition.code.coding: wrapped in a list" in rec.problems


def test_finding_listed_once_across_value_sets():
    both = condition("both", {"coding": [{"system": SNOMED, "code": "82470000"}, {"system": SNOMED, "code": "55300003"}]})
    found = findings(record(both), "fasciculation", "cramp")
    assert len(found) == 1 and found[0].valueset == "fasciculation"
    assert found[0].coding["code"] == "82470000"


def test_onset_sources_and_order():
    a = twitch("a", onsetDateTime=day(40))
    b = twitch("b", onsetPeriod={"start": day(60)})
    c = twitch("c", recordedDate=day(20))
    d = twitch("d")
    found = findings(record(d, c, a, b), "fasciculation")
    assert [f.reference for f in found] == ["Condition/b", "Condition/a", "Condition/c", "Condition/d"]
    assert found[0].onset == NOW - timedelta(days=60)
    assert onset(found) == NOW - timedelta(days=60)
    assert onset(found[3:]) is None


# -- findings: observations ----------------------------------------------------------------

FASC = concept(SNOMED, "82470000", "Muscle fasciculation")


@pytest.mark.parametrize("status, extra, present", [
    ("final", {}, True),
    ("preliminary", {}, True),
    ("amended", {"valueBoolean": True}, True),
    ("registered", {}, False),
    ("entered-in-error", {}, False),
    ("cancelled", {}, False),
    ("final", {"valueBoolean": False}, False),
    ("final", {"valueCodeableConcept": concept(SNOMED, "2667000", "Absent")}, False),
    ("final", {"valueCodeableConcept": concept(SNOMED, "52101004", "Present")}, True),
    ("final", {"valueCodeableConcept": {"text": "Not present"}}, False),
    ("final", {"valueString": "No"}, False),
    ("final", {"valueString": "Noted in the left calf"}, True),
    ("final", {"interpretation": flag("NEG")}, False),
    ("final", {"interpretation": [{"text": "Negative"}]}, False),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v))
def test_observation_presence(status, extra, present):
    assert bool(findings(record(exam("o", FASC, status, **extra)), "fasciculation")) is present


def test_observation_onset_is_effective_time():
    found = findings(record(exam("o", FASC, effectiveDateTime=day(33))), "fasciculation")
    assert found[0].onset == NOW - timedelta(days=33)
    assert found[0].kind == "Observation" and found[0].reference == "Observation/o"


# -- findings: location --------------------------------------------------------------------

def site(system: str | None = None, code: str | None = None, text: str | None = None) -> list[dict]:
    out: dict = {}
    if system:
        out["coding"] = [{"system": system, "code": code}]
    if text:
        out["text"] = text
    return [out]


HAMSTRING_STRAIN = condition("hs", concept(ICD10CM, "S76.311A", "Strain of muscle of posterior thigh"))
THIGH_PAIN = condition("tp", concept(ICD10CM, "M79.651", "Pain in right thigh"))


@pytest.mark.parametrize("tw, others, thigh, limb", [
    (twitch(bodySite=site(SNOMED, "88225001")), (), True, True),
    (twitch(bodySite=site(text="Back of left thigh")), (), True, True),
    (twitch(bodySite=site(text="Biceps femoris")), (), True, True),
    (twitch(bodySite=site(text="left calf")), (), False, True),
    (twitch(bodySite=site(text="Legs")), (), False, True),
    (condition("tw", {"text": "Fasciculation", "coding": [{"system": SNOMED, "code": "82470000",
                                                           "display": "Twitching of right thigh"}]}), (), True, True),
    (condition("tw", {"text": "Twitching of left quadriceps"}), (), True, True),
    (condition("tw", {"text": "Twitching of the right foot"}), (), False, True),
    (twitch(), (), False, False),                                       # the record does not say where
    (twitch(bodySite=site(text="legal guardian reported")), (), False, False),  # whole words only
    (twitch(), (HAMSTRING_STRAIN,), True, True),
    (twitch(), (THIGH_PAIN,), True, True),
    (twitch(bodySite=site(text="left leg")), (THIGH_PAIN,), True, True),
    (twitch(bodySite=site(text="eyelid")), (HAMSTRING_STRAIN,), False, False),
    (twitch(), (condition("hs", HAMSTRING_STRAIN["code"], clinical="resolved"),), False, False),
], ids=lambda v: "" if not isinstance(v, bool) else str(v))
def test_location(tw, others, thigh, limb):
    rec = record(tw, *others)
    found = findings(rec, "fasciculation")[0]
    assert in_thigh(found, rec) is thigh
    assert in_lower_limb(found, rec) is limb


# -- medications -----------------------------------------------------------------------------

def rx(code: str, display: str | None = None) -> dict:
    return concept(RXNORM, code, display)


def med_request(rid: str, medication: dict | None = None, status: str = "active", intent: str = "order",
                **extra) -> dict:
    res = {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": intent,
           "subject": PATIENT, "authoredOn": day(14), **extra}
    if medication is not None:
        res["medicationCodeableConcept"] = medication
    return res


def statement(rid: str, medication: dict, status: str = "active", **extra) -> dict:
    return {"resourceType": "MedicationStatement", "id": rid, "status": status, "subject": PATIENT,
            "medicationCodeableConcept": medication, **extra}


def dosage(value: float | None, unit: str | None, *, frequency: float | None = None, period: float | None = 1,
           period_unit: str = "d", **extra) -> dict:
    out: dict = dict(extra)
    if value is not None:
        quantity: dict = {"value": value}
        if unit:
            quantity.update(unit=unit, system=UCUM, code=unit)
        out["doseAndRate"] = [{"doseQuantity": quantity}]
    repeat: dict = {}
    if frequency is not None:
        repeat["frequency"] = frequency
    if period is not None:
        repeat.update(period=period, periodUnit=period_unit)
    if repeat:
        out["timing"] = {"repeat": repeat}
    return out


IRINOTECAN = rx("51499", "irinotecan")
CARBAMAZEPINE_100_TAB = rx("197441", "carbamazepine 100 MG Oral Tablet")


@pytest.mark.parametrize("resource, active", [
    (med_request("a", IRINOTECAN), True),
    (med_request("a", IRINOTECAN, status="on-hold"), True),
    (med_request("a", IRINOTECAN, intent="plan"), True),
    (med_request("a", IRINOTECAN, intent="original-order"), True),
    (med_request("a", IRINOTECAN, intent="proposal"), False),
    (med_request("a", IRINOTECAN, status="draft"), False),
    (med_request("a", IRINOTECAN, status="stopped"), False),
    (med_request("a", IRINOTECAN, status="completed"), False),
    (med_request("a", IRINOTECAN, status="entered-in-error"), False),
    (med_request("a", IRINOTECAN, doNotPerform=True), False),
    (statement("s", IRINOTECAN), True),
    (statement("s", IRINOTECAN, status="intended"), True),
    (statement("s", IRINOTECAN, status="completed"), False),
    (statement("s", IRINOTECAN, status="not-taken"), False),
], ids=lambda v: f"{v.get('resourceType')}-{v.get('status')}-{v.get('intent')}-{v.get('doNotPerform')}"
   if isinstance(v, dict) else str(v))
def test_active_medication_statuses(resource, active):
    meds = active_medications(record(resource))
    assert bool(using(meds, "irinotecan")) is active


def test_product_code_maps_to_ingredient_and_strength():
    meds = active_medications(record(med_request("c", CARBAMAZEPINE_100_TAB)))
    assert meds[0].ingredients == {"carbamazepine"}
    assert meds[0].product is not None and meds[0].product.strength_mg == 100
    assert using(meds, "cyp3a4_inducer") == meds
    assert using(meds, "cyp3a4_inhibitor") == []


def test_text_only_medication_matches_whole_words():
    text_only = med_request("t", {"text": "Baclofen 10 mg tablets"})
    trap = med_request("p", {"text": "Penicillin V Potassium 250 MG"})
    meds = active_medications(record(text_only, trap))
    assert meds[0].ingredients == {"baclofen"} and meds[0].label == "Baclofen 10 mg tablets"
    assert meds[1].ingredients == frozenset()


def test_medication_statement_dates():
    s = statement("s", IRINOTECAN, effectivePeriod={"start": day(21)}, dateAsserted=day(2))
    use = active_medications(record(s))[0]
    assert use.kind == "MedicationStatement" and use.reference == "MedicationStatement/s"
    assert use.started == NOW - timedelta(days=21)


def test_contained_medication():
    req = med_request("c", contained=[{"resourceType": "Medication", "id": "m1", "code": IRINOTECAN}],
                      medicationReference={"reference": "#m1"})
    use = active_medications(record(req))[0]
    assert use.ingredients == {"irinotecan"} and use.medication["id"] == "m1"


def test_bundled_medication_by_full_url():
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "urn:uuid:7c2b", "resource": {"resourceType": "Medication", "code": IRINOTECAN}},
        {"fullUrl": "urn:uuid:91aa", "resource": med_request("b", medicationReference={"reference": "urn:uuid:7c2b"})},
    ]}
    meds = active_medications(Record.from_prefetch("p1", [bundle], NOW))
    assert [m.ingredients for m in meds] == [{"irinotecan"}]


def test_prefetched_medication_by_type_and_id():
    med = {"resourceType": "Medication", "id": "irino", "code": IRINOTECAN}
    meds = active_medications(record(med_request("r", medicationReference={"reference": "Medication/irino"}), med))
    assert meds[0].ingredients == {"irinotecan"}


def test_missing_medication_names_no_ingredient_and_a_faulty_one_is_repaired():
    missing = med_request("m", medicationReference={"reference": "Medication/nowhere", "display": "Irinotecan"})
    listed = med_request("x", medicationReference={"reference": "Medication/bad"})
    bad = {"resourceType": "Medication", "id": "bad", "code": IRINOTECAN, "status": ["active"]}
    rec = record(missing, listed, bad)
    meds = active_medications(rec)
    assert [m.ingredients for m in meds] == [frozenset(), {"irinotecan"}]
    assert meds[0].label == "Irinotecan" and meds[0].medication is None
    assert rec.invalid == 1 and rec.problems == ["Medication.status: unwrapped from a list"]


def test_medication_falls_back_to_medication_ingredients():
    med = {"resourceType": "Medication", "id": "m", "code": {"text": "Cramp pack"},
           "ingredient": [{"itemCodeableConcept": {"text": "Baclofen"}}]}
    meds = active_medications(record(med_request("r", medicationReference={"reference": "Medication/m"}), med))
    assert meds[0].ingredients == {"baclofen"}


def test_medication_request_with_a_faulty_subject_is_read_unless_it_names_another_patient():
    mine = med_request("x", IRINOTECAN)
    mine["subject"] = "Patient/p1"  # a string where a Reference belongs
    other = med_request("y", IRINOTECAN)
    other["subject"] = "Patient/someone-else"
    rec = record(mine, other)
    assert [m.reference for m in active_medications(rec)] == ["MedicationRequest/x"]
    assert rec.invalid == 1 and rec.other_patient == 1


def test_medication_request_status_as_a_list_and_dosage_as_an_object_are_read():
    order = med_request("x", IRINOTECAN, status=["active"])
    order["dosageInstruction"] = {"timing": {"code": {"coding": [{"code": "BID"}]}},
                                  "doseAndRate": [{"doseQuantity": {"value": "5", "unit": "mg"}}]}
    meds = active_medications(record(order))
    assert [m.daily_mg for m in meds] == [10.0]


def test_ingredient_names():
    assert "carbamazepine" in ingredient_names("cyp3a4_inducer")
    assert ingredient_names("baclofen") == {"baclofen"}
    with pytest.raises(KeyError):
        ingredient_names("baclofenn")


def test_medication_of_draft_order():
    draft = med_request("d", rx("1292", "baclofen"), status="draft", intent="proposal",
                        dosageInstruction=[dosage(10, "mg", frequency=3)])
    use = medication_of(draft, record())
    assert use is not None and use.ingredients == {"baclofen"} and use.daily_mg == 30
    assert active_medications(record(draft)) == []
    assert medication_of({"resourceType": "ServiceRequest"}, record()) is None
    # a faulty element no rule reads never loses the order (the draft is repaired, not dropped)
    repaired = medication_of({**draft, "subject": "Patient/p1", "category": {"text": "community"}}, record())
    assert repaired is not None and repaired.daily_mg == 30 and repaired.resource["category"] == [{"text": "community"}]


def test_changed_is_latest_started_bounds_period():
    stepped = dosage(10, "mg", frequency=2)
    stepped["timing"]["repeat"]["boundsPeriod"] = {"start": day(9)}
    req = med_request("b", rx("1292"), authoredOn=day(30), dosageInstruction=[stepped])
    use = active_medications(record(req))[0]
    assert use.started == NOW - timedelta(days=30) and use.changed == NOW - timedelta(days=9)


TEN_MG_TABLET = Product(rxnorm="x", display="10 MG Oral Tablet", ingredients=frozenset({"baclofen"}),
                        strength_mg=10, unit_form="tablet")


@pytest.mark.parametrize("dosages, product, expected", [
    ([dosage(10, "mg", frequency=3)], None, 30),                                  # 10 mg three times daily
    ([dosage(1, "tablet", frequency=2)], TEN_MG_TABLET, 20),                      # 1 tablet x 10 mg x 2/day
    ([dosage(1, "{tbl}", frequency=2)], TEN_MG_TABLET, 20),
    ([dosage(1, None, frequency=2)], TEN_MG_TABLET, 20),                          # Synthea: no unit
    ([dosage(1, None, frequency=2)], None, None),                                 # no unit, no strength
    ([dosage(1, "tablet", frequency=2)], None, None),
    ([dosage(10, "mg", frequency=1, period=8, period_unit="h")], None, 30),       # every 8 h
    ([dosage(10, "mg", period=1)], None, 10),                                     # frequency defaults to 1
    ([dosage(70, "mg", frequency=1, period=1, period_unit="wk")], None, 10),
    ([dosage(0.5, "g", frequency=2)], None, 1000),
    ([dosage(5, "mL", frequency=2)], None, None),                                 # unknown unit
    ([dosage(10, "mg", frequency=3, period=None)], None, None),                   # no period
    ([dosage(10, "mg", period=None, timing={"code": {"coding": [{"code": "BID"}]}})], None, 20),
    ([dosage(10, "mg", frequency=1), dosage(20, "mg", frequency=1)], None, 30),   # concurrent entries add up
    ([dosage(10, "mg", frequency=1, sequence=1), dosage(20, "mg", frequency=1, sequence=2)], None, None),
    ([{"doseAndRate": [{"doseRange": {"low": {"value": 5, "unit": "mg"}, "high": {"value": 10, "unit": "mg"}}}],
       "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}], None, None),
    ([], None, None),
])
def test_daily_dose_mg(dosages, product, expected):
    assert daily_dose_mg(med_request("r", rx("1292"), dosageInstruction=dosages), product) == expected


def test_daily_dose_uses_the_product_table():
    s = statement("s", CARBAMAZEPINE_100_TAB, dosage=[dosage(2, None, frequency=2)])
    assert active_medications(record(s))[0].daily_mg == 400
    synthea_style = med_request("b", rx("197391", "baclofen 10 MG Oral Tablet"),
                                dosageInstruction=[dosage(1, None, frequency=2)])
    use = active_medications(record(synthea_style))[0]
    assert use.ingredients == {"baclofen"} and use.daily_mg == 20


# -- labs ------------------------------------------------------------------------------------

def test_potassium_low_by_default_limit_and_meq():
    result = latest_lab(record(lab("k", "2823-3", 3.2, "mmol/L")), "potassium", NOW, 90)
    assert result.low and result.why_low == "below the default limit 3.5 mmol/L"
    assert result.shown() == "3.2 mmol/L" and result.reference == "Observation/k"
    meq = latest_lab(record(lab("k", "6298-4", 3.4, "meq/L")), "potassium", NOW, 90)
    assert meq.low and meq.value_default == 3.4
    assert not latest_lab(record(lab("k", "2823-3", 3.6, "mEq/L")), "potassium", NOW, 90).low


def test_latest_inside_window_wins():
    rec = record(lab("old", "2823-3", 3.0, "mmol/L", days_ago=60), lab("new", "2823-3", 4.0, "mmol/L", days_ago=2),
                 lab("ancient", "2823-3", 2.5, "mmol/L", days_ago=400))
    result = latest_lab(rec, "potassium", NOW, 90)
    assert result.reference == "Observation/new" and not result.low
    assert latest_lab(record(lab("k", "2823-3", 3.0, "mmol/L", days_ago=91)), "potassium", NOW, 90) is None


def test_results_that_are_not_results_are_ignored():
    prelim = lab("p", "2823-3", 2.9, "mmol/L", status="preliminary")
    no_value = lab("n", "2823-3", 1, "mmol/L", dataAbsentReason={"text": "haemolysed"})
    del no_value["valueQuantity"]
    undated = lab("u", "2823-3", 2.9, "mmol/L")
    del undated["effectiveDateTime"]
    rec = record(prelim, no_value, undated)
    assert latest_lab(rec, "potassium", NOW, 90) is None


def test_a_result_with_a_faulty_element_no_rule_reads_is_still_a_result():
    broken = {**lab("b", "2823-3", 2.9, "mmol/L"), "subject": "Patient/p1", "status": ["final"]}
    rec = record(broken)
    result = latest_lab(rec, "potassium", NOW, 90)
    assert result is not None and result.low and rec.invalid == 1


def test_issued_and_period_end_date_a_result():
    issued = lab("i", "2823-3", 3.9, "mmol/L", issued=day(3))
    del issued["effectiveDateTime"]
    period = lab("e", "2823-3", 3.9, "mmol/L", effectivePeriod={"start": day(9), "end": day(8)})
    del period["effectiveDateTime"]
    assert latest_lab(record(issued), "potassium", NOW, 90).effective == NOW - timedelta(days=3)
    assert latest_lab(record(period), "potassium", NOW, 90).effective == NOW - timedelta(days=8)


@pytest.mark.parametrize("value, unit, low", [
    (1.6, "mg/dL", True),
    (1.8, "mg/dL", False),
    (0.6, "mmol/L", True),    # x 2.431 = 1.46 mg/dL
    (0.8, "mmol/L", False),   # = 1.94 mg/dL
    (1.3, "meq/L", True),     # x 1.215 = 1.58 mg/dL
    (1.5, "mEq/L", False),    # = 1.82 mg/dL
])
def test_magnesium_unit_conversions(value, unit, low):
    result = latest_lab(record(lab("mg", "19123-9", value, unit)), "magnesium", NOW, 90)
    assert result.low is low
    assert result.value_default == pytest.approx(value * {"mg/dL": 1, "mmol/L": 2.431}.get(unit, 1.215))


def test_unknown_unit_is_used_only_through_range_or_interpretation():
    plain = latest_lab(record(lab("k", "2823-3", 0.1, "mg%")), "potassium", NOW, 90)
    assert plain.value_default is None and not plain.low
    ranged = latest_lab(record(lab("k", "2823-3", 0.1, "mg%", referenceRange=low_range(0.2, "mg%"))),
                        "potassium", NOW, 90)
    assert ranged.low and ranged.why_low == "below the reference range"
    flagged = latest_lab(record(lab("k", "2823-3", 0.1, "mg%", interpretation=flag("L"))), "potassium", NOW, 90)
    assert flagged.low and flagged.why_low == "flagged low"


def test_reference_range_then_interpretation_then_default():
    lab_says_normal = lab("m", "19123-9", 1.6, "mg/dL", referenceRange=low_range(1.5, "mg/dL"))
    assert not latest_lab(record(lab_says_normal), "magnesium", NOW, 90).low
    flagged_normal = lab("m", "19123-9", 1.6, "mg/dL", interpretation=flag("N"))
    assert not latest_lab(record(flagged_normal), "magnesium", NOW, 90).low
    interpretation_only = lab("m", "19123-9", 2.0, "mg/dL", interpretation=flag("LL"))
    assert latest_lab(record(interpretation_only), "magnesium", NOW, 90).why_low == "flagged low"
    unitless_range = lab("k", "2823-3", 3.6, "mmol/L", referenceRange=low_range(3.7, None))
    assert latest_lab(record(unitless_range), "potassium", NOW, 90).why_low == "below the reference range"
    other_unit_range = lab("m", "19123-9", 0.72, "mmol/L", referenceRange=low_range(1.8, "mg/dL"))
    assert latest_lab(record(other_unit_range), "magnesium", NOW, 90).why_low == "below the reference range"
    converted_normal = lab("m", "19123-9", 0.8, "mmol/L", referenceRange=low_range(1.8, "mg/dL"))  # 1.94 mg/dL
    assert not latest_lab(record(converted_normal), "magnesium", NOW, 90).low
    unusable_range = lab("m", "19123-9", 0.8, "mmol/L", referenceRange=low_range(5, "mg%"), interpretation=flag("L"))
    assert latest_lab(record(unusable_range), "magnesium", NOW, 90).why_low == "flagged low"
    abnormal_flag = lab("m", "19123-9", 1.5, "mg/dL", interpretation=flag("A"))
    assert latest_lab(record(abnormal_flag), "magnesium", NOW, 90).why_low == "below the default limit 1.7 mg/dL"


def test_comparator_values():
    below = {**lab("m", "19123-9", 1.0, "mg/dL")}
    below["valueQuantity"]["comparator"] = "<"
    assert latest_lab(record(below), "magnesium", NOW, 90).low
    above = {**lab("m", "19123-9", 1.0, "mg/dL")}
    above["valueQuantity"]["comparator"] = ">"
    assert not latest_lab(record(above), "magnesium", NOW, 90).low


def test_corrected_calcium_with_albumin_in_seven_days():
    rec = record(lab("ca", "17861-6", 8.2, "mg/dL", days_ago=5), lab("alb", "1751-7", 3.0, "g/dL", days_ago=8))
    result = latest_lab(rec, "calcium", NOW, 90)
    assert result.corrected and result.albumin.reference == "Observation/alb"
    assert result.value_default == pytest.approx(9.0) and not result.low
    assert "corrected for albumin 3 g/dL: 9.0 mg/dL" in result.shown()


def test_corrected_calcium_ignores_the_uncorrected_flag_but_not_the_range():
    flagged = lab("ca", "17861-6", 8.2, "mg/dL", interpretation=flag("L"))
    assert not latest_lab(record(flagged, lab("alb", "1751-7", 30, "g/L")), "calcium", NOW, 90).low
    ranged = lab("ca", "17861-6", 8.2, "mg/dL", referenceRange=low_range(9.2, "mg/dL"))
    result = latest_lab(record(ranged, lab("alb", "1751-7", 3.0, "g/dL")), "calcium", NOW, 90)
    assert result.low and result.why_low == "below the reference range"


def test_calcium_without_albumin_in_seven_days_is_measured():
    rec = record(lab("ca", "17861-6", 8.2, "mg/dL", days_ago=5), lab("alb", "1751-7", 3.0, "g/dL", days_ago=13))
    result = latest_lab(rec, "calcium", NOW, 90)
    assert not result.corrected and result.value_default == 8.2
    assert result.low and result.why_low == "below the default limit 8.5 mg/dL"
    molar = latest_lab(record(lab("ca", "17861-6", 2.0, "mmol/L")), "calcium", NOW, 90)
    assert molar.value_default == pytest.approx(8.016) and molar.low


def test_calcium_low_considers_the_newest_of_total_and_ionized():
    ionized_low = lab("ion", "47596-2", 1.05, "mmol/L", days_ago=2)
    total_normal = lab("tot", "17861-6", 9.1, "mg/dL", days_ago=10)
    rec = record(ionized_low, total_normal)
    assert latest_calcium(rec, NOW, 90).lab == "calcium_ionized"
    assert calcium_low(rec, NOW, 90).reference == "Observation/ion"
    newer_total = record(lab("ion", "47596-2", 1.05, "mmol/L", days_ago=20), total_normal)
    assert calcium_low(newer_total, NOW, 90) is None
    assert calcium_low(record(), NOW, 90) is None


def test_lab_codes_do_not_cross():
    rec = record(lab("ca", "17861-6", 2.0, "mg/dL"))
    assert latest_lab(rec, "potassium", NOW, 90) is None
    assert latest_lab(rec, "calcium_ionized", NOW, 90) is None


# -- LGI1 ------------------------------------------------------------------------------------

def lgi1(rid: str = "l", days_ago: float = 10, status: str = "final", **value) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": status, "subject": PATIENT,
            "code": concept(LOINC, "82978-8"), "effectiveDateTime": day(days_ago), **value}


@pytest.mark.parametrize("value, positive", [
    ({"interpretation": flag("POS")}, True),
    ({"interpretation": flag("H"), "valueString": "1:5"}, True),
    ({"interpretation": flag("NEG"), "valueString": "1:40"}, False),
    ({"valueString": "1:40"}, True),
    ({"valueString": "1:10"}, True),
    ({"valueString": "<1:10"}, False),
    ({"valueString": "1:5"}, False),
    ({"valueString": "Positive"}, True),
    ({"valueString": "Not detected"}, False),
    ({"valueString": "negative"}, False),
    ({"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 80}}}, True),
    ({"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 5}}}, False),
    ({"valueQuantity": {"value": 20, "unit": "{titer}"}}, True),
    ({"valueQuantity": {"value": 10, "comparator": "<", "unit": "{titer}"}}, False),
    ({"valueCodeableConcept": concept(SNOMED, "10828004", "Positive")}, True),
    ({"valueCodeableConcept": concept(SNOMED, "260385009", "Negative")}, False),
    ({"valueCodeableConcept": {"text": "Detected"}}, True),
    ({}, False),
], ids=json.dumps)
def test_lgi1_positive(value, positive):
    assert lgi1_positive(lgi1(**value)) is positive


def test_lgi1_results_newest_first_and_final_only():
    rec = record(lgi1("old", 200, valueString="1:40"), lgi1("new", 5, valueString="negative"),
                 lgi1("pre", 1, status="preliminary", valueString="1:80"))
    results = lgi1_results(rec)
    assert [r.reference for r in results] == ["Observation/new", "Observation/old"]
    assert [r.positive for r in results] == [False, True]
    assert results[1].shown() == "1:40"


# -- already addressed -------------------------------------------------------------------------

def emg_code() -> dict:
    return concept(CPT, "95886", "Needle EMG each extremity with NCS")


def service(rid: str, code: dict, status: str = "active", days_ago: float | None = 30, **extra) -> dict:
    res = {"resourceType": "ServiceRequest", "id": rid, "status": status, "intent": "order", "subject": PATIENT,
           "code": code, **extra}
    if days_ago is not None:
        res["authoredOn"] = day(days_ago)
    return res


def procedure(rid: str, code: dict, status: str = "completed", days_ago: float | None = 100) -> dict:
    res = {"resourceType": "Procedure", "id": rid, "status": status, "subject": PATIENT, "code": code}
    if days_ago is not None:
        res["performedDateTime"] = day(days_ago)
    return res


@pytest.mark.parametrize("resource, done", [
    (service("s", emg_code()), True),
    (service("s", emg_code(), status="completed", days_ago=300), True),
    (service("s", emg_code(), days_ago=400), False),                        # outside its window
    (service("s", emg_code(), status="draft"), False),
    (service("s", emg_code(), status="revoked"), False),
    (service("s", emg_code(), doNotPerform=True), False),
    (service("s", emg_code(), days_ago=None), True),                        # open order, undated
    (service("s", emg_code(), status="completed", days_ago=None), False),   # done, but when?
    (service("s", emg_code(), days_ago=-10), True),                         # scheduled ahead
    (procedure("p", emg_code()), True),
    (procedure("p", emg_code(), status="preparation", days_ago=None), True),
    (procedure("p", emg_code(), status="not-done"), False),
    (procedure("p", emg_code(), days_ago=366), False),
    ({"resourceType": "DiagnosticReport", "id": "d", "status": "final", "code": emg_code(), "subject": PATIENT,
      "issued": day(20)}, True),
    ({"resourceType": "DiagnosticReport", "id": "d", "status": "registered", "code": emg_code(),
      "subject": PATIENT, "issued": day(20)}, False),
    (service("s", concept(CPT, "99999")), False),                           # another order
], ids=lambda v: f"{v['resourceType']}-{v['status']}-{v.get('authoredOn', v.get('performedDateTime', ''))[:10]}"
   if isinstance(v, dict) else str(v))
def test_already_done(resource, done):
    found = already_done(record(resource), "emg_ncs", NOW, 365)
    assert (found is resource) if done else found is None


def test_already_done_returns_the_newest_and_respects_the_referral_window():
    referral = concept(SNOMED, "308474002", "Referral to neurologist")
    rec = record(service("a", referral, days_ago=80), service("b", referral, days_ago=20))
    assert already_done(rec, "neurology_referral", NOW, 90)["id"] == "b"
    assert already_done(record(service("a", referral, days_ago=100)), "neurology_referral", NOW, 90) is None


def test_service_request_with_a_faulty_element_still_counts():
    broken = {**service("s", emg_code()), "subject": "Patient/p1", "category": {"text": "procedure"}}
    rec = record(broken)
    assert already_done(rec, "emg_ncs", NOW, 365)["id"] == "s" and rec.invalid == 1


# -- draft orders ------------------------------------------------------------------------------

def test_order_codes_and_is_order_for():
    sr = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order", "subject": PATIENT,
          "code": {"coding": [{"system": CPT, "code": "95886"}, {"system": ICD10CM, "code": "R25.3"}]}}
    assert order_codes(sr) == [(CPT, "95886"), (ICD10CM, "R253")]
    assert is_order_for(sr, "emg_ncs") and not is_order_for(sr, "thigh_mri")
    mr = med_request("d", status="draft", contained=[{"resourceType": "Medication", "id": "m", "code": rx("1292")}],
                     medicationReference={"reference": "#m"})
    assert order_codes(mr) == [(RXNORM, "1292")]
    assert order_codes({"resourceType": "ServiceRequest"}) == []


# -- real-world samples (skipped when ../shared is absent) --------------------------------------

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fhir_samples"


@pytest.mark.samples
def test_synthea_bundles_read_without_surprises():
    bundles = sorted((SAMPLES / "synthea_r4_bundles_smart").glob("*.json"))
    if not bundles:
        pytest.skip("no FHIR samples in ../shared/fhir_samples")
    checked = 0
    for path in bundles:
        rec = Record("sample", flatten(json.loads(path.read_text("utf-8"))), datetime(2020, 1, 1, tzinfo=UTC))
        for use in active_medications(rec):
            if "penicillin" in use.label.lower():
                assert not use.ingredients & {"furosemide", "carbamazepine", "irinotecan"}
            checked += 1
        k = latest_lab(rec, "potassium", rec.now, 36500)
        if k is not None:
            assert k.value_default == pytest.approx(k.value)  # Synthea sends mmol/L
        latest_calcium(rec, rec.now, 36500)
        findings(rec, "fasciculation", "cramp", "muscle_weakness")
    assert checked > 0


@pytest.mark.samples
def test_us_core_examples():
    folder = SAMPLES / "us_core_examples"
    if not folder.is_dir():
        pytest.skip("no FHIR samples in ../shared/fhir_samples")
    load = lambda name: json.loads((folder / name).read_text("utf-8"))  # noqa: E731
    calcium = load("observation-serum-calcium.json")
    now = datetime(2005, 7, 10, tzinfo=UTC)
    result = latest_lab(Record("example", [calcium], now), "calcium", now, 90)
    assert result is not None and result.value == 7.7 and result.low
    potassium = latest_lab(Record("example", [load("observation-serum-potassium.json")], now), "potassium", now, 90)
    assert potassium is not None and not potassium.low
    for name in ("medicationrequest-contained-oral-axid.json", "medicationrequest-referenced-oral-axid.json"):
        medication_of(load(name), Record("example", [], now))  # resolves or not, never raises


def test_sandbox_pill_doses_count_tablets_of_a_known_product():
    """The CDS Hooks sandbox's Rx View writes doses in {pill}: 2 pills of a 10 mg tablet twice daily = 40 mg."""
    from cdshooks.cards.clinical import daily_dose_mg
    from cdshooks.fhir.terminology import product

    order = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "197391"}]},
             "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "{pill}",
                                                                       "system": "http://unitsofmeasure.org",
                                                                       "code": "{pill}"}}],
                                    "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}}]}
    assert daily_dose_mg(order, product(order["medicationCodeableConcept"])) == 40
