"""The dev /fhir endpoint, through a real HTTP server on 127.0.0.1, and the fault variants built on it."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from flask import Flask

from cdshooks.tryit.fhir_endpoint import blueprint
from cdshooks.tryit.fixtures import FIXTURES_DIR

from ..fault_fhir import GOOD_TOKEN, create_app, faults
from ..loopback import serve_wsgi

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
DEMO = "demo-twitching-weakness"
SNOMED = "http://snomed.info/sct"


class Clock:
    """A settable request clock."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _extra_folder(root: Path) -> Path:
    """A Synthea-style transaction Bundle (urn:uuid references) and a two-patient Bulk NDJSON stream."""
    folder = root / "extra"
    folder.mkdir()
    pid = "9a1b2c3d-0000-4000-8000-000000000001"
    transaction = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{pid}", "resource": {"resourceType": "Patient", "id": pid},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:med-1", "resource": {"resourceType": "Medication", "id": "med-1",
                                                       "code": {"text": "baclofen 10 mg tablet"}},
             "request": {"method": "POST", "url": "Medication"}},
            {"fullUrl": "urn:uuid:mr-1", "resource": {
                "resourceType": "MedicationRequest", "id": "mr-1", "status": "active", "intent": "order",
                "medicationReference": {"reference": "urn:uuid:med-1"},
                "subject": {"reference": f"urn:uuid:{pid}"}, "authoredOn": "2024-05-01"},
             "request": {"method": "POST", "url": "MedicationRequest"}},
        ],
    }
    (folder / "synthea-like.json").write_text(json.dumps(transaction))
    patients = [{"resourceType": "Patient", "id": f"bulk-{n}"} for n in (1, 2)]
    conditions = [{"resourceType": "Condition", "id": f"bulk-c{n}", "subject": {"reference": f"Patient/bulk-{n}"},
                   "code": {"coding": [{"system": SNOMED, "code": "82470000"}]}} for n in (1, 2)]
    (folder / "Patient.000.ndjson").write_text("\n".join(json.dumps(p) for p in patients) + "\n")
    (folder / "Condition.000.ndjson").write_text("\n".join(json.dumps(c) for c in conditions) + "\n")
    return folder


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture(scope="module")
def extra(tmp_path_factory) -> Path:
    return _extra_folder(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="module")
def base(clock, extra):
    app = Flask(__name__)
    app.register_blueprint(blueprint([FIXTURES_DIR, extra], clock=clock))
    with serve_wsgi(app) as url:
        yield url + "/fhir"


def get(url: str, **params) -> requests.Response:
    return requests.get(url, params=params, timeout=10)


def ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_metadata(base):
    r = get(f"{base}/metadata")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/fhir+json"
    cap = r.json()
    assert cap["resourceType"] == "CapabilityStatement" and cap["fhirVersion"] == "4.0.1"
    assert cap["implementation"]["url"] == base
    by_type = {res["type"]: res for res in cap["rest"][0]["resource"]}
    assert {"Patient", "Condition", "Observation", "MedicationRequest", "Medication"} <= set(by_type)
    condition_params = {p["name"] for p in by_type["Condition"]["searchParam"]}
    assert {"patient", "code", "clinical-status", "recorded-date"} <= condition_params
    assert by_type["MedicationRequest"]["searchInclude"][0] == "MedicationRequest:medication"


def test_read_resolves_relative_dates_at_request_time(base, clock):
    r = get(f"{base}/Condition/{DEMO}-fasciculation")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/fhir+json"
    assert r.json()["onsetDateTime"] == "2024-12-31"  # $today-60d
    clock.now = NOW + timedelta(days=1)
    try:
        assert get(f"{base}/Condition/{DEMO}-fasciculation").json()["onsetDateTime"] == "2025-01-01"
        assert get(f"{base}/Observation/{DEMO}-potassium").json()["effectiveDateTime"] == "2025-02-27T12:00:00Z"
    finally:
        clock.now = NOW


def test_unknown_id_and_type_are_404_outcomes(base):
    for url in (f"{base}/Patient/nobody", f"{base}/Foo/1", f"{base}/Foo", f"{base}/lowercase/1"):
        r = get(url)
        assert r.status_code == 404, url
        assert r.headers["Content-Type"] == "application/fhir+json"
        assert r.json()["resourceType"] == "OperationOutcome"


def test_draft_orders_are_not_served(base):
    assert get(f"{base}/MedicationRequest/{DEMO}-baclofen").status_code == 404
    assert get(f"{base}/MedicationRequest", patient=DEMO).json()["total"] == 0


def test_search_by_patient_and_code(base):
    bundle = get(f"{base}/Condition", patient=DEMO, code=f"{SNOMED}|82470000").json()
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    assert ids(bundle) == [f"{DEMO}-fasciculation"]
    assert bundle["entry"][0]["fullUrl"] == f"{base}/Condition/{DEMO}-fasciculation"
    self_link = {link["relation"]: link["url"] for link in bundle["link"]}["self"]
    assert self_link.startswith(f"{base}/Condition?") and "patient=demo-twitching-weakness" in self_link


def test_search_by_patient_reference_and_date(base):
    bundle = get(f"{base}/Observation", patient=f"Patient/{DEMO}", date="ge2025-02-20", code="2823-3").json()
    assert ids(bundle) == [f"{DEMO}-potassium"]
    assert get(f"{base}/Observation", patient=DEMO, date="lt2025-02-20").json()["total"] == 0


def test_paging_follows_next_links(base):
    url = f"{base}/Condition?patient={DEMO}&_sort=-recorded-date&_count=1"
    seen, totals, pages = [], set(), 0
    while url and pages < 10:
        bundle = requests.get(url, timeout=10).json()
        pages += 1
        seen += ids(bundle)
        totals.add(bundle["total"])
        url = {link["relation"]: link["url"] for link in bundle["link"]}.get("next")
    assert seen == [f"{DEMO}-weakness", f"{DEMO}-fasciculation"]
    assert totals == {2} and pages == 2


def test_post_search_with_a_form_body(base):
    r = requests.post(f"{base}/Observation/_search", timeout=10,
                      data={"patient": DEMO, "code": "http://loinc.org|2823-3", "_sort": "-date"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/fhir+json"
    assert ids(r.json()) == [f"{DEMO}-potassium"]


def test_patient_list_covers_every_folder(base):
    bundle = get(f"{base}/Patient", _count=1000).json()  # more fixture patients than one default page
    assert {DEMO, "9a1b2c3d-0000-4000-8000-000000000001", "bulk-1", "bulk-2"} <= set(ids(bundle))
    assert bundle["total"] == len(bundle["entry"])


def test_transaction_bundles_are_served_with_resolved_references(base):
    pid = "9a1b2c3d-0000-4000-8000-000000000001"
    bundle = get(f"{base}/MedicationRequest", patient=pid, _include="MedicationRequest:medication").json()
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]] == [
        ("mr-1", "match"), ("med-1", "include")]
    assert bundle["entry"][0]["resource"]["medicationReference"]["reference"] == "Medication/med-1"


def test_bulk_ndjson_is_split_by_patient(base):
    assert ids(get(f"{base}/Condition", subject="Patient/bulk-2").json()) == ["bulk-c2"]


def test_malformed_parameters_are_400(base):
    for params in ({"date": "soon"}, {"_count": "many"}, {"_offset": "-1"}):
        r = get(f"{base}/Observation", **params)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", params


def test_unknown_parameters_are_ignored(base):
    bundle = get(f"{base}/Condition", patient=DEMO, foo="bar").json()
    assert bundle["total"] == 2
    assert "foo" not in bundle["link"][0]["url"]


def test_cors_allows_any_origin(base):
    r = get(f"{base}/Patient")
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_changed_files_are_reloaded(tmp_path):
    folder = _extra_folder(tmp_path)
    app = Flask(__name__)
    app.register_blueprint(blueprint([folder], clock=Clock(NOW)))
    with serve_wsgi(app) as url:
        assert get(f"{url}/fhir/Patient/bulk-3").status_code == 404
        with (folder / "Patient.000.ndjson").open("a") as fh:
            fh.write(json.dumps({"resourceType": "Patient", "id": "bulk-3"}) + "\n")
        later = time.time() + 5
        os.utime(folder / "Patient.000.ndjson", (later, later))
        assert get(f"{url}/fhir/Patient/bulk-3").status_code == 200


def test_missing_folders_are_skipped(tmp_path):
    app = Flask(__name__)
    app.register_blueprint(blueprint([tmp_path / "absent"]))
    with serve_wsgi(app) as url:
        assert get(f"{url}/fhir/Patient").json()["total"] == 0


@pytest.mark.samples
def test_synthea_folder_is_served(tmp_path):
    source = Path(__file__).resolve().parents[3] / "shared" / "fhir_samples" / "synthea_r4_bundles_smart"
    if not source.is_dir():
        pytest.skip("../shared/fhir_samples is not present")
    path = min(source.glob("*.json"), key=lambda p: p.stat().st_size)
    shutil.copy(path, tmp_path / path.name)
    app = Flask(__name__)
    app.register_blueprint(blueprint([tmp_path]))
    with serve_wsgi(app) as url:
        (pid,) = ids(get(f"{url}/fhir/Patient").json())
        obs = get(f"{url}/fhir/Observation", patient=pid, _sort="-date", _count=3).json()
        assert obs["total"] > 3 and len(obs["entry"]) == 3
        assert any(link["relation"] == "next" for link in obs["link"])


# -- the fault server used by the FHIR-client tests --------------------------------------

@pytest.fixture(scope="module")
def fault(extra):
    app = create_app([FIXTURES_DIR, extra], clock=Clock(NOW))
    state = faults(app)
    with serve_wsgi(app) as url:
        yield url, state


def test_fault_server_serves_fixtures_and_logs_requests(fault):
    url, state = fault
    state.clear()
    assert get(f"{url}/fhir/Patient/{DEMO}").status_code == 200
    (entry,) = state.seen()
    assert (entry.variant, entry.method, entry.path, entry.authorization) == ("fhir", "GET", f"/fhir/Patient/{DEMO}",
                                                                              False)


def test_fault_unauthorized(fault):
    url, state = fault
    r = get(f"{url}/unauthorized/fhir/Patient/{DEMO}")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    ok = requests.get(f"{url}/unauthorized/fhir/Patient/{DEMO}", headers={"Authorization": f"Bearer {GOOD_TOKEN}"},
                      timeout=10)
    assert ok.status_code == 200 and ok.json()["id"] == DEMO
    assert GOOD_TOKEN not in repr(state.seen())


def test_fault_error_malformed_and_outcome(fault):
    url, _ = fault
    assert get(f"{url}/error500/fhir/Patient").status_code == 500
    malformed = get(f"{url}/malformed/fhir/Condition", patient=DEMO)
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    outcome = get(f"{url}/outcome/fhir/Condition", patient=DEMO)
    assert outcome.status_code == 200 and outcome.json()["resourceType"] == "OperationOutcome"


def test_fault_redirect_goes_to_another_host(fault):
    url, state = fault
    r = requests.get(f"{url}/redirect/fhir/Patient/{DEMO}", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("http://localhost:") and r.headers["Location"].endswith(
        f"/fhir/Patient/{DEMO}")
    state.clear()
    followed = requests.get(f"{url}/redirect/fhir/Patient/{DEMO}", headers={"Authorization": "Bearer x"}, timeout=10)
    assert followed.status_code == 200
    assert [(e.variant, e.authorization) for e in state.seen()] == [("redirect", True), ("fhir", False)]


def test_fault_slow(fault):
    url, state = fault
    started = time.monotonic()
    assert get(f"{url}/slow/fhir/Patient/{DEMO}", _delay="0.3").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.Timeout):
        requests.get(f"{url}/slow/fhir/Patient/{DEMO}", params={"_delay": "1"}, timeout=0.2)


def test_fault_huge(fault):
    url, state = fault
    r = get(f"{url}/huge/fhir/Patient", _bytes="50000")
    assert len(r.content) > 50000 and r.json()["resourceType"] == "Bundle"
    state.huge_chunked = True
    try:
        chunked = get(f"{url}/huge/fhir/Patient", _bytes="50000")
        assert "Content-Length" not in chunked.headers and len(chunked.content) > 50000
    finally:
        state.huge_chunked = False


def test_fault_paged_forces_pages_of_two(fault):
    url, _ = fault
    bundle = get(f"{url}/paged/fhir/Patient", _count="100").json()
    assert bundle["total"] >= 4 and len(bundle["entry"]) == 2
    nxt = {link["relation"]: link["url"] for link in bundle["link"]}["next"]
    assert nxt.startswith(f"{url}/paged/fhir/Patient?") and "_count=2" in nxt
    second = requests.get(nxt, timeout=10).json()
    assert len(second["entry"]) == 2 and not set(ids(second)) & set(ids(bundle))
