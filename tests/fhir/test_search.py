"""In-memory FHIR search: the parameters our prefetch templates and the CDS Hooks sandbox use."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cdshooks.fhir import search as fhirsearch
from cdshooks.fhir.bundles import load_resources, patients
from cdshooks.fhir.search import SearchError, run, search, searchset

SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fhir_samples"


def cond(cid: str, code: str, system: str | None = SNOMED, *, patient: str = "p1", recorded: str | None = None,
         onset: str | None = None, status: str = "active") -> dict:
    coding = {"code": code} if system is None else {"system": system, "code": code}
    res = {"resourceType": "Condition", "id": cid, "code": {"coding": [coding]},
           "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                          "code": status}]},
           "subject": {"reference": f"Patient/{patient}"}}
    if recorded:
        res["recordedDate"] = recorded
    if onset:
        res["onsetDateTime"] = onset
    return res


def obs(oid: str, code: str, when: object, *, patient: str = "p1") -> dict:
    res = {"resourceType": "Observation", "id": oid, "status": "final",
           "category": [{"coding": [{"code": "laboratory"}]}],
           "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{patient}"}}
    if isinstance(when, dict):
        res["effectivePeriod"] = when
    elif when is not None:
        res["effectiveDateTime"] = when
    return res


def ids(resources: list[dict]) -> list[str]:
    return [r["id"] for r in resources]


@pytest.fixture
def record() -> list[dict]:
    return [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Patient", "id": "p2"},
        cond("fasc", "82470000", recorded="2025-01-10", onset="2024-12-01"),
        cond("weak", "26544005", recorded="2025-02-10"),
        cond("icd", "G25.3", ICD, onset="2024-06-01"),
        cond("nosys", "X1", None, status="resolved"),
        cond("other", "82470000", patient="p2", recorded="2025-03-01"),
        {**cond("grp", "82470000"), "subject": {"reference": "Group/p1"}},
        obs("k-old", "2823-3", "2024-11-30T23:30:00-05:00"),
        obs("k-new", "2823-3", "2025-02-27T08:00:00Z"),
        obs("ca", "17861-6", {"start": "2025-01-05T10:00:00Z", "end": "2025-01-05T11:00:00Z"}),
        obs("undated", "2823-3", None),
        {"resourceType": "Medication", "id": "med-bac",
         "code": {"coding": [{"system": RXNORM, "code": "1292"}]}},
        {"resourceType": "MedicationRequest", "id": "mr-ref", "status": "active",
         "medicationReference": {"reference": "Medication/med-bac"}, "subject": {"reference": "Patient/p1"},
         "authoredOn": "2025-01-01"},
        {"resourceType": "MedicationRequest", "id": "mr-code", "status": "on-hold",
         "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1292"}]},
         "subject": {"reference": "Patient/p1"}, "authoredOn": "2025-02-01"},
        {"resourceType": "MedicationRequest", "id": "mr-stopped", "status": "stopped",
         "medicationReference": {"reference": "Medication/med-bac"}, "subject": {"reference": "Patient/p1"},
         "authoredOn": "2024-01-01"},
    ]


class TestReferences:
    def test_patient_with_and_without_prefix_and_as_url(self, record):
        expected = ["fasc", "weak", "icd", "nosys"]
        assert ids(search(record, "Condition", "patient=p1")) == expected
        assert ids(search(record, "Condition", "patient=Patient/p1")) == expected
        assert ids(search(record, "Condition", "patient=https://ehr.example/fhir/Patient/p1")) == expected

    def test_patient_only_matches_patient_references(self, record):
        assert "grp" not in ids(search(record, "Condition", "patient=p1"))
        assert ids(search(record, "Condition", "subject=Group/p1")) == ["grp"]

    def test_subject_and_comma_list(self, record):
        assert ids(search(record, "Condition", "subject=Patient/p2")) == ["other"]
        assert set(ids(search(record, "Condition", "patient=p1,p2"))) == {"fasc", "weak", "icd", "nosys", "other"}

    def test_id(self, record):
        assert ids(search(record, "Patient", "_id=p2")) == ["p2"]
        assert ids(search(record, "Condition", [("_id", "weak,icd")])) == ["weak", "icd"]


class TestTokens:
    def test_system_and_code(self, record):
        assert ids(search(record, "Condition", f"patient=p1&code={SNOMED}|82470000")) == ["fasc"]

    def test_code_in_any_system_and_or_list(self, record):
        assert ids(search(record, "Condition", "code=82470000,26544005&patient=p1")) == ["fasc", "weak"]

    def test_bar_code_means_no_system(self, record):
        assert ids(search(record, "Condition", "code=|X1")) == ["nosys"]
        assert ids(search(record, "Condition", "code=|82470000")) == []

    def test_system_only(self, record):
        assert ids(search(record, "Condition", f"code={ICD}|")) == ["icd"]

    def test_icd_dots_are_plain_characters(self, record):
        assert ids(search(record, "Condition", f"code={ICD}|G25.3")) == ["icd"]
        assert search(record, "Condition", f"code={ICD}|G253") == []
        assert search(record, "Condition", f"code={ICD}|G25") == []

    def test_url_encoded_bar_from_a_query_string(self, record):
        assert ids(search(record, "Condition", "code=http%3A%2F%2Fsnomed.info%2Fsct%7C26544005")) == ["weak"]

    def test_medication_code_reads_the_concept_not_the_reference(self, record):
        assert ids(search(record, "MedicationRequest", f"code={RXNORM}|1292")) == ["mr-code"]

    def test_status_and_clinical_status(self, record):
        assert ids(search(record, "MedicationRequest", "status=active,on-hold")) == ["mr-ref", "mr-code"]
        assert ids(search(record, "Condition", "clinical-status=resolved")) == ["nosys"]

    def test_category(self, record):
        assert len(search(record, "Observation", "category=laboratory")) == 4


class TestDates:
    def test_day_precision_eq_contains_instants_of_that_day(self, record):
        assert ids(search(record, "Observation", "date=2025-02-27")) == ["k-new"]
        assert ids(search(record, "Observation", "date=eq2025-02")) == ["k-new"]

    def test_time_zones_are_honoured(self, record):
        # 2024-11-30T23:30-05:00 is 2024-12-01T04:30Z
        assert ids(search(record, "Observation", "date=2024-12-01")) == ["k-old"]
        assert search(record, "Observation", "date=2024-11-30") == []

    def test_prefixes(self, record):
        assert ids(search(record, "Observation", "date=ge2025-01-05")) == ["k-new", "ca"]
        assert ids(search(record, "Observation", "date=gt2025-01-05")) == ["k-new"]
        assert ids(search(record, "Observation", "date=lt2025-01-05")) == ["k-old"]
        assert ids(search(record, "Observation", "date=le2025-01-05")) == ["k-old", "ca"]
        assert ids(search(record, "Observation", "date=ne2025-01-05")) == ["k-old", "k-new"]

    def test_two_dates_make_a_range(self, record):
        assert ids(search(record, "Observation", "date=ge2025-01-01&date=lt2025-02-01")) == ["ca"]

    def test_period_and_instant_precision(self, record):
        assert ids(search(record, "Observation", "date=ge2025-01-05T10:30:00Z")) == ["k-new", "ca"]
        assert ids(search(record, "Observation", "date=gt2025-01-05T11:30:00Z")) == ["k-new"]

    def test_condition_date_is_recorded_then_onset(self, record):
        assert ids(search(record, "Condition", "patient=p1&date=lt2024-07")) == ["icd"]
        assert ids(search(record, "Condition", "recorded-date=2025-01-10")) == ["fasc"]
        assert ids(search(record, "Condition", "onset-date=le2024-12")) == ["fasc", "icd"]

    def test_resources_without_the_date_never_match(self, record):
        assert "undated" not in ids(search(record, "Observation", "date=ne2000"))

    def test_malformed_date_is_an_error(self, record):
        with pytest.raises(SearchError):
            run(record, "Observation", "date=ge2025-13-01")
        with pytest.raises(SearchError):
            run(record, "Observation", "date=yesterday")


class TestResultShape:
    def test_sort_newest_first_with_undated_last(self, record):
        assert ids(search(record, "Observation", "code=2823-3&_sort=-date")) == ["k-new", "k-old", "undated"]
        assert ids(search(record, "Observation", "code=2823-3&_sort=date")) == ["k-old", "k-new", "undated"]

    def test_sort_names_of_the_templates(self, record):
        assert ids(search(record, "Condition", "patient=p1&_sort=-recorded-date")) == ["weak", "fasc", "icd", "nosys"]
        assert ids(search(record, "MedicationRequest", "_sort=-authoredon")) == ["mr-code", "mr-ref", "mr-stopped"]

    def test_count_offset_and_total(self, record):
        first = run(record, "Observation", "_sort=-date&_count=2")
        assert (ids(first.matches), first.total, first.next_offset) == (["k-new", "ca"], 4, 2)
        second = run(record, "Observation", first.query(first.next_offset))
        assert (ids(second.matches), second.total, second.next_offset) == (["k-old", "undated"], 4, None)

    def test_summary_count(self, record):
        result = run(record, "Observation", "_summary=count&_count=10")
        assert (result.matches, result.total) == ([], 4)

    def test_bad_count(self, record):
        with pytest.raises(SearchError):
            run(record, "Observation", "_count=ten")

    def test_include_medication(self, record):
        result = run(record, "MedicationRequest",
                     "patient=p1&status=active,on-hold&_include=MedicationRequest:medication")
        assert ids(result.matches) == ["mr-ref", "mr-code"]
        assert ids(result.included) == ["med-bac"]
        bundle = searchset(result.matches, result.total, included=result.included)
        assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "match", "include"]

    def test_include_only_for_the_page(self, record):
        result = run(record, "MedicationRequest", "status=on-hold&_include=MedicationRequest:medication")
        assert result.included == []

    def test_unknown_parameters_are_ignored_and_reported(self, record):
        result = run(record, "Condition", "patient=p1&encounter=e1&code:text=twitch&_format=json&_sort=-foo")
        assert ids(result.matches) == ["fasc", "weak", "icd", "nosys"]
        assert set(result.ignored) == {"encounter", "code:text", "_format", "_sort=-foo"}
        assert result.query() == "patient=p1"

    def test_empty_values_are_ignored(self, record):
        assert len(search(record, "Condition", "code=&patient=p1")) == 4

    def test_searchset_bundle(self, record):
        matches = search(record, "Condition", "patient=p2")
        bundle = searchset(matches, 7, "http://x/fhir/Condition?_offset=1", base_url="http://x/fhir/",
                           self_url="http://x/fhir/Condition?patient=p2")
        assert bundle["type"] == "searchset" and bundle["total"] == 7
        assert bundle["entry"][0]["fullUrl"] == "http://x/fhir/Condition/other"
        assert {link["relation"]: link["url"] for link in bundle["link"]} == {
            "self": "http://x/fhir/Condition?patient=p2", "next": "http://x/fhir/Condition?_offset=1"}

    def test_searchset_without_base_has_no_full_urls(self, record):
        bundle = searchset(search(record, "Patient"), 2)
        assert all("fullUrl" not in e for e in bundle["entry"]) and "link" not in bundle


def test_capability_helpers_name_what_run_understands():
    params = fhirsearch.search_params("Condition")
    assert {"patient", "code", "clinical-status", "date", "recorded-date", "onset-date"} <= set(params)
    assert "authoredon" in fhirsearch.search_params("MedicationRequest")
    assert fhirsearch.includes_for("MedicationRequest")[0] == "MedicationRequest:medication"


@pytest.mark.samples
def test_synthea_bundle_search_is_fast_and_resolves_urn_uuid_references():
    folder = SAMPLES / "synthea_r4_bundles_smart"
    if not folder.is_dir():
        pytest.skip("../shared/fhir_samples is not present")
    path = max(folder.glob("*.json"), key=lambda p: p.stat().st_size)
    started = time.perf_counter()
    split = patients(load_resources(path))
    (pid, resources), = split.items()
    result = run(resources, "Observation", f"patient=Patient/{pid}&code={LOINC}|6298-4&_sort=-date&_count=5")
    elapsed = time.perf_counter() - started
    assert result.total > 0 and len(result.matches) == min(5, result.total)
    dates = [r["effectiveDateTime"] for r in result.matches]
    assert dates == sorted(dates, reverse=True)
    assert elapsed < 2.0
