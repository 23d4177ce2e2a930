"""Scenario files: relative dates, draft orders, splitting by patient, the index, and the fixture conventions."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cdshooks.cards.registry import HOOKS
from cdshooks.fhir import models as fhir
from cdshooks.fhir.bundles import (
    draft_orders,
    load_bundle,
    load_resources,
    patient_of,
    patients,
    record_resources,
    resolve_dates,
)
from cdshooks.tryit.fixtures import FIXTURES_DIR, INDEX_FILE, scenarios

NOW = datetime(2025, 3, 1, 12, 30, 45, 123456, tzinfo=timezone.utc)
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fhir_samples"


# -- relative dates -------------------------------------------------------------------------

@pytest.mark.parametrize("token, expected", [
    ("$now", "2025-03-01T12:30:45Z"),
    ("$now-30d", "2025-01-30T12:30:45Z"),
    ("$now+2h", "2025-03-01T14:30:45Z"),
    ("$now-15m", "2025-03-01T12:15:45Z"),
    ("$today", "2025-03-01"),
    ("$today-400d", "2024-01-26"),
    ("$today+1d", "2025-03-02"),
])
def test_relative_date_tokens(token, expected):
    assert resolve_dates({"when": [token]}, NOW) == {"when": [expected]}


def test_now_in_another_zone_or_naive_is_taken_as_utc():
    assert resolve_dates("$now", datetime(2025, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5)))) == \
        "2025-03-01T12:00:00Z"
    assert resolve_dates("$today", datetime(2025, 3, 1, 23, 0)) == "2025-03-01"


@pytest.mark.parametrize("text", ["$nowhere", "cost $now", "$", "now-3d", "2025-01-01"])
def test_other_strings_are_left_alone(text):
    assert resolve_dates(text, NOW) == text


@pytest.mark.parametrize("bad", ["$now-3", "$now-3w", "$today+2h", "$now+-1d", "$today-1.5d"])
def test_malformed_tokens_are_errors(bad):
    with pytest.raises(ValueError, match="relative date"):
        resolve_dates(bad, NOW)


def test_load_bundle_names_the_file_of_a_bad_token(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"resourceType": "Observation", "effectiveDateTime": "$now-3 days"}))
    with pytest.raises(ValueError, match="bad.json"):
        load_bundle(path, NOW)


def test_resolving_copies_only_what_changes():
    source = {"a": {"date": "$now"}, "b": {"code": "x"}, "c": ["$today", "y"]}
    before = copy.deepcopy(source)
    out = resolve_dates(source, NOW)
    assert source == before
    assert out["b"] is source["b"] and out["a"] is not source["a"]


def test_load_bundle_gives_a_fresh_object_each_time():
    path = FIXTURES_DIR / "demo-twitching-weakness.json"
    first = load_bundle(path, NOW)
    first["entry"].clear()
    assert load_bundle(path, NOW)["entry"]


# -- the demo scenario ----------------------------------------------------------------------

def test_demo_scenario_dates_orders_and_record():
    bundle = load_bundle(FIXTURES_DIR / "demo-twitching-weakness.json", NOW)
    by_id = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert by_id["demo-twitching-weakness-fasciculation"]["onsetDateTime"] == "2024-12-31"
    assert by_id["demo-twitching-weakness-potassium"]["effectiveDateTime"] == "2025-02-26T12:30:45Z"
    assert [o["id"] for o in draft_orders(bundle)] == ["demo-twitching-weakness-baclofen"]
    record = record_resources(bundle)
    assert "demo-twitching-weakness-baclofen" not in {r["id"] for r in record}
    assert {r["resourceType"] for r in record} == {"Patient", "Condition", "Observation"}


# -- splitting by patient -------------------------------------------------------------------

def _transaction() -> dict:
    def entry(uid: str, resource: dict) -> dict:
        return {"fullUrl": f"urn:uuid:{uid}", "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]}}

    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("u-p1", {"resourceType": "Patient", "id": "u-p1"}),
        entry("u-doc", {"resourceType": "Practitioner", "id": "u-doc"}),
        entry("u-med", {"resourceType": "Medication"}),  # no id: takes the uuid
        entry("u-p2", {"resourceType": "Patient", "id": "u-p2"}),
        entry("u-c1", {"resourceType": "Condition", "id": "u-c1", "subject": {"reference": "urn:uuid:u-p1"},
                       "asserter": {"reference": "urn:uuid:u-doc"}}),
        entry("u-m2", {"resourceType": "MedicationRequest", "id": "u-m2", "subject": {"reference": "urn:uuid:u-p2"},
                       "medicationReference": {"reference": "urn:uuid:u-med"}}),
        entry("u-x", {"resourceType": "Observation", "id": "u-x", "subject": {"reference": "Patient/elsewhere"}}),
    ]}


def test_patients_splits_a_transaction_bundle_and_resolves_urn_uuid():
    bundle = _transaction()
    before = copy.deepcopy(bundle)
    split = patients(bundle)
    assert bundle == before  # the input is not modified
    assert list(split) == ["u-p1", "u-p2"]
    assert [r["id"] for r in split["u-p1"]] == ["u-p1", "u-c1", "u-doc"]
    assert [r["id"] for r in split["u-p2"]] == ["u-p2", "u-m2", "u-med"]
    condition = split["u-p1"][1]
    assert condition["subject"] == {"reference": "Patient/u-p1"}
    assert condition["asserter"] == {"reference": "Practitioner/u-doc"}
    assert split["u-p2"][1]["medicationReference"] == {"reference": "Medication/u-med"}


def test_patients_splits_a_stream_with_patients_last():
    stream = [
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/b"}},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/a"}},
        {"resourceType": "Patient", "id": "a"},
        {"resourceType": "Patient", "id": "b"},
    ]
    split = patients(iter(stream))
    assert {pid: [r["id"] for r in rs] for pid, rs in split.items()} == {"a": ["a", "c1"], "b": ["b", "c2"]}


def test_patient_of():
    assert patient_of({"resourceType": "Patient", "id": "p"}) == "p"
    assert patient_of({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p"}}) == "p"
    assert patient_of({"resourceType": "Observation", "subject": {"reference": "Group/g"}}) is None
    assert patient_of({"resourceType": "Medication"}) is None


# -- scenarios ------------------------------------------------------------------------------

def test_scenarios_read_the_repo_index():
    found = {s.name: s for s in scenarios()}
    demo = found["demo-twitching-weakness"]
    assert demo.hook == "patient-view" and demo.patient == "demo-twitching-weakness"
    assert demo.file == FIXTURES_DIR / "demo-twitching-weakness.json"
    select = found["demo-twitching-weakness-baclofen-select"]
    assert select.selections == ("MedicationRequest/demo-twitching-weakness-baclofen",)


def test_extra_folder_without_an_index(tmp_path):
    (tmp_path / "multi.json").write_text(json.dumps(_transaction()))
    (tmp_path / "Patient.000.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "nd"}) + "\n")
    found = scenarios(tmp_path / "no-repo", extra=tmp_path)
    assert [(s.name, s.hook, s.patient) for s in found] == [
        ("multi/u-p1", "patient-view", "u-p1"), ("multi/u-p2", "patient-view", "u-p2"),
        (f"{tmp_path.name}/nd", "patient-view", "nd")]
    only_p2 = found[1].bundle(NOW)
    assert [e["resource"]["id"] for e in only_p2["entry"]] == ["u-p2", "u-m2", "u-med"]
    assert found[2].bundle(NOW)["entry"][0]["resource"]["id"] == "nd"


def test_index_errors(tmp_path):
    (tmp_path / INDEX_FILE).write_text(json.dumps({"scenarios": [
        {"name": "a", "file": "a.json", "hook": "patient-view", "patient": "p"},
        {"name": "a", "file": "a.json", "hook": "order-sign", "patient": "p"}]}))
    with pytest.raises(ValueError, match="duplicate scenario name"):
        scenarios(tmp_path)
    (tmp_path / INDEX_FILE).write_text(json.dumps({"scenarios": [
        {"name": "a", "file": "a.json", "hook": "encounter-start", "patient": "p"}]}))
    with pytest.raises(ValueError, match="unknown hook"):
        scenarios(tmp_path)


@pytest.mark.samples
def test_bulk_ndjson_sample_splits_by_patient():
    folder = SAMPLES / "synthea_r4_bulk_ndjson_smart"
    if not folder.is_dir():
        pytest.skip("../shared/fhir_samples is not present")
    resources = load_resources(folder)
    split = patients(resources)
    assert len(split) > 1
    owned = sum(len(rs) for rs in split.values())
    assert owned == sum(1 for r in resources if patient_of(r) in split)
    for pid, rs in split.items():
        assert rs[0] == {**rs[0], "resourceType": "Patient", "id": pid}
        assert all(patient_of(r) == pid for r in rs)


# -- conventions every scenario file in fhir_fixtures/ must follow -------------------------

def _fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES_DIR.glob("*.json") if p.name != INDEX_FILE)


def test_index_is_well_formed():
    data = json.loads((FIXTURES_DIR / INDEX_FILE).read_text("utf-8"))
    assert list(data) == ["scenarios"]
    for item in data["scenarios"]:
        assert {"name", "file", "hook", "patient", "fires", "silent", "description"} <= set(item), item.get("name")
        assert item["hook"] in HOOKS
        assert not set(item["fires"]) & set(item["silent"]), item["name"]
    indexed = {item["file"] for item in data["scenarios"]}
    assert {p.name for p in _fixture_files()} <= indexed, "every fixture file is used by a scenario"


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_scenario_follows_the_conventions(scenario):
    bundle = load_bundle(scenario.file, NOW)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    resources = [e["resource"] for e in bundle["entry"]]
    patients_in_file = [r["id"] for r in resources if r["resourceType"] == "Patient"]
    assert patients_in_file == [scenario.patient]
    for res in resources:
        assert isinstance(res.get("id"), str), res
        assert fhir.validation_errors(res) == [], (res["id"], fhir.validation_errors(res))
        if res["resourceType"] != "Patient":
            assert patient_of(res) == scenario.patient, res["id"]
    drafts = {f"{o['resourceType']}/{o['id']}" for o in draft_orders(bundle)}
    if scenario.hook != "patient-view":
        assert drafts, "an order scenario needs a draft order"
    assert set(scenario.selections or ()) <= drafts


def test_resource_ids_are_unique_across_fixture_files():
    owner: dict[str, str] = {}
    for path in _fixture_files():
        for res in load_resources(path):
            key = f"{res['resourceType']}/{res['id']}"
            assert key not in owner, f"{key} is in {owner.get(key)} and {path.name}"
            owner[key] = path.name
