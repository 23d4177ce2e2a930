"""The batch commands: evaluate (table, --json, --now, --orders), simulate (folders, NDJSON, the shared
Synthea samples), load-fixtures (against a loopback FHIR server), and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from flask import Flask, Response, request

from cdshooks import create_app
from cdshooks.cli import main
from cdshooks.fhir.bundles import is_draft_order, load_bundle
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.service.hook_request import build_request
from cdshooks.tryit.fixtures import FIXTURES_DIR

from .conftest import REPO, SHARED, make_settings
from .loopback import serve_wsgi
from .probe_rules import ORDERS, POTASSIUM
from .spec_checks import check_response

DEMO = "demo-twitching-weakness"
DEMO_FILE = str(FIXTURES_DIR / f"{DEMO}.json")
SAMPLES = SHARED / "fhir_samples"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-01-01"}


def potassium_obs(oid: str, pid: str, when: str, value: float = 3.1) -> dict:
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    }


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data), "utf-8")
    return str(path)


def probe_rows(out: str, rule_id: str) -> list[str]:
    return [line for line in out.splitlines() if rule_id in line]


# -- evaluate ---------------------------------------------------------------------------------

def test_evaluate_prints_a_table_of_the_cards(capsys, probe_rules):
    code, out, err = run(capsys, "evaluate", DEMO_FILE)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"Patient/{DEMO}  patient-view  as of ")
    assert lines[1].split() == ["indicator", "rule", "summary", "suggestions"]
    row = probe_rows(out, POTASSIUM)
    assert len(row) == 1 and row[0].split()[0] == "warning"
    assert "Probe: potassium 3.1 mmol/L" in " ".join(out.split())
    assert "Give potassium chloride [create MedicationRequest]" in " ".join(out.split())


def test_evaluate_json_is_the_response_an_http_call_gets(capsys, probe_rules, tmp_path):
    code, out, err = run(capsys, "evaluate", DEMO_FILE, "--json")
    assert code == 0, err
    body = json.loads(out)
    check_response(body)
    probe = [c for c in body["cards"] if c["source"]["topic"]["code"] == POTASSIUM]
    assert len(probe) == 1 and probe[0]["summary"].startswith("Probe: potassium 3.1 mmol/L on ")
    assert probe[0]["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "MedicationRequest"

    # the request an EHR would send for the same data, POSTed over HTTP, gets the same cards (uuids aside)
    app = create_app(make_settings(tmp_path))
    now = datetime.now(timezone.utc)
    templates = app.extensions["cdshooks"].engine.services[SERVICE_IDS["patient-view"]].prefetch
    req = build_request(load_bundle(DEMO_FILE, now), "patient-view", templates, now=now)
    with serve_wsgi(app) as base:
        http = requests.post(f"{base}/cds-services/{SERVICE_IDS['patient-view']}", json=req, timeout=30).json()
    app.extensions["cdshooks"].store.dispose()
    def strip(cards):
        return [(c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in cards]
    assert strip(body["cards"]) == strip(http["cards"])


def test_now_replays_a_date(capsys, probe_rules, tmp_path):
    path = write(tmp_path / "fixed.json", bundle(patient("p1"), potassium_obs("k1", "p1", "2024-01-10T08:00:00Z")))
    code, out, _ = run(capsys, "evaluate", path, "--now", "2024-01-12")
    assert code == 0 and "as of 2024-01-12T00:00:00Z" in out
    assert "Probe: potassium 3.1 mmol/L on 2024-01-10" in " ".join(out.split())
    code, out, _ = run(capsys, "evaluate", path, "--now", "2024-06-01T10:00:00+02:00")
    assert code == 0 and "as of 2024-06-01T08:00:00Z" in out
    assert not probe_rows(out, POTASSIUM)
    # relative fixture dates move with --now
    code, out, _ = run(capsys, "evaluate", DEMO_FILE, "--now", "2020-05-01T09:00:00Z")
    assert code == 0 and "Probe: potassium 3.1 mmol/L on 2020-04-28" in " ".join(out.split())


def test_order_hooks_send_the_bundles_draft_orders_or_the_given_ones(capsys, probe_rules, tmp_path):
    code, out, err = run(capsys, "evaluate", DEMO_FILE, "--hook", "order-sign", "--json")
    assert code == 0, err
    summaries = [c["summary"] for c in json.loads(out)["cards"]]
    assert f"Probe: judged MedicationRequest/{DEMO}-baclofen" in summaries

    order = {"resourceType": "MedicationRequest", "id": "given-quinine", "intent": "order",
             "medicationCodeableConcept": {"text": "quinine 300 mg"}}
    orders = write(tmp_path / "orders.json", order)
    code, out, err = run(capsys, "evaluate", DEMO_FILE, "--hook", "order-select", "--orders", orders, "--json")
    assert code == 0, err
    summaries = [c["summary"] for c in json.loads(out)["cards"]]
    assert "Probe: judged MedicationRequest/given-quinine" in summaries
    assert f"Probe: judged MedicationRequest/{DEMO}-baclofen" not in summaries


def test_patient_picks_one_of_several(capsys, probe_rules, tmp_path):
    path = write(tmp_path / "two.json", bundle(patient("a"), patient("b"),
                                               potassium_obs("kb", "b", "$now-1d")))
    code, out, _ = run(capsys, "evaluate", path, "--patient", "b")
    assert code == 0 and out.startswith("Patient/b ") and probe_rows(out, POTASSIUM)
    code, out, _ = run(capsys, "evaluate", path, "--patient", "a")
    assert code == 0 and out.startswith("Patient/a ") and not probe_rows(out, POTASSIUM)


BAD_INPUTS = {
    "not-json": ("{not json", [], "is not JSON"),
    "not-fhir": ('{"hello": "world"}', [], "is not FHIR"),
    "no-patient": (json.dumps(bundle(potassium_obs("k", "p", "2024-01-01"))), [], "holds no Patient"),
    "unknown-hook": (json.dumps(bundle(patient("p"))), ["--hook", "encounter-start"], "unknown hook"),
    "several": (json.dumps(bundle(patient("p"), patient("q"))), [], "holds 2 patients (p, q); name one with --patient"),
    "absent-patient": (json.dumps(bundle(patient("p"))), ["--patient", "zz"], "holds no Patient/zz"),
    "bad-now": (json.dumps(bundle(patient("p"))), ["--now", "last tuesday"], "not an ISO 8601"),
    "no-drafts": (json.dumps(bundle(patient("p"))), ["--hook", "order-sign"], "give them with --orders FILE"),
    "bad-date-token": (json.dumps(bundle(patient("p"), potassium_obs("k", "p", "$now-3x"))), [], "malformed relative"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, case):
    text, extra, message = BAD_INPUTS[case]
    path = tmp_path / "input.json"
    path.write_text(text, "utf-8")
    code, out, err = run(capsys, "evaluate", str(path), *extra)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cdshooks evaluate: ") and message in err


def test_missing_files_and_bad_orders_are_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "absent.json"))
    assert code == 2 and err.startswith("cdshooks evaluate: cannot read") and len(err.splitlines()) == 1
    orders = write(tmp_path / "orders.json", patient("x"))
    code, _, err = run(capsys, "evaluate", DEMO_FILE, "--hook", "order-sign", "--orders", orders)
    assert code == 2 and "holds no order" in err and len(err.splitlines()) == 1


def test_the_installed_command_prints_no_traceback(tmp_path):
    path = write(tmp_path / "several.json", bundle(patient("p"), patient("q")))
    proc = subprocess.run([sys.executable, "-m", "cdshooks.cli", "evaluate", path], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"cdshooks evaluate: {path} holds 2 patients (p, q); name one with --patient ID"]


# -- simulate ---------------------------------------------------------------------------------

def test_simulate_counts_cards_per_rule_over_a_folder(capsys, probe_rules, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder / "a.json", bundle(patient("a"), potassium_obs("ka", "a", "$now-2d")))
    write(folder / "b.json", bundle(patient("b"), potassium_obs("kb", "b", "$now-30d")))
    write(folder / "index.json", {"scenarios": []})  # not FHIR and skipped by name
    code, out, err = run(capsys, "simulate", str(folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["patients"] == 2 and report["answered"] == 2 and report["errors"] == []
    row = next(r for r in report["rules"] if r["rule"] == POTASSIUM)
    assert row == {"rule": POTASSIUM, "evaluated": 2, "cards": 1, "patients": 1, "failed": 0, "rate": 0.5,
                   "rateLow": 0.0945, "rateHigh": 0.9055, "patientsWithCard": 1, "alertsPer1000": 500.0,
                   "alertsPer1000Low": 94.53, "alertsPer1000High": 905.47}  # Wilson 95% for 1 of 2
    assert {"totalSeconds", "loadSeconds", "p50Ms", "p95Ms"} <= set(report["timing"])
    assert "simulate: 2/2 patients (100%)" in err  # stderr is not a terminal: progress lines

    code, out, _ = run(capsys, "simulate", str(folder / "a.json"), str(folder / "b.json"))
    assert code == 0
    row = probe_rows(out, POTASSIUM)[0].split()
    assert row == [POTASSIUM, "2", "1", "1", "50.0%", "9.4-90.5%", "500.0", "0"]
    assert out.splitlines()[0].startswith("2 patients, hook patient-view")
    assert out.splitlines()[-1].startswith("time: ") and "p95" in out


def test_simulate_splits_bulk_ndjson_by_patient(capsys, probe_rules, tmp_path):
    folder = tmp_path / "bulk"
    folder.mkdir()
    (folder / "Patient.000.ndjson").write_text("\n".join(json.dumps(patient(p)) for p in "xyz") + "\n", "utf-8")
    (folder / "Observation.000.ndjson").write_text(
        json.dumps(potassium_obs("kx", "x", "$now-1d")) + "\n" + json.dumps(potassium_obs("ky", "y", "$now-1d")),
        "utf-8")
    code, out, err = run(capsys, "simulate", str(folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["patients"] == 3
    assert next(r for r in report["rules"] if r["rule"] == POTASSIUM)["patients"] == 2


def test_simulate_reports_a_rule_that_raises_and_exits_1(capsys, probe_rules, tmp_path):
    from cdshooks.cards import registry as rules

    def broken(call):
        raise KeyError("bug")

    rules.rule(id="zz-probe-broken", title="broken", hooks=("patient-view",), indicator="info", reads={},
               source=rules.Source("000", ("Test",)))(broken)
    try:
        path = write(tmp_path / "a.json", bundle(patient("a"), potassium_obs("ka", "a", "$now-2d")))
        code, out, _ = run(capsys, "simulate", path, "--json")
    finally:
        rules._REGISTRY.pop("zz-probe-broken", None)
    assert code == 1
    report = json.loads(out)
    broken_row = next(r for r in report["rules"] if r["rule"] == "zz-probe-broken")
    assert broken_row["failed"] == 1 and broken_row["evaluated"] == 0
    assert next(r for r in report["rules"] if r["rule"] == POTASSIUM)["cards"] == 1  # the others still ran


def test_simulate_order_hooks_skip_patients_without_draft_orders(capsys, probe_rules, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder / "a.json", bundle(patient("a")))
    code, out, _ = run(capsys, "simulate", str(folder), DEMO_FILE, "--hook", "order-sign", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["patients"] == 2 and report["answered"] == 1
    assert report["skipped"] == [{"reason": "no draft orders", "patients": 1}]
    assert next(r for r in report["rules"] if r["rule"] == ORDERS)["cards"] == 1


def test_simulate_bad_input(capsys, tmp_path):
    code, _, err = run(capsys, "simulate", str(tmp_path / "nothing"))
    assert code == 2 and err.strip() == f"cdshooks simulate: {tmp_path / 'nothing'}: no such file or folder"
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "simulate", str(tmp_path / "empty"))
    assert code == 2 and "no Patient found" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "simulate", str(tmp_path / "empty"), "--hook", "nope")
    assert code == 2 and "unknown hook 'nope'" in err


def _sample_patient_ids(folder: Path) -> set[str]:
    ids: set[str] = set()
    for path in folder.glob("*.json"):
        for entry in json.loads(path.read_text("utf-8")).get("entry", []):
            if entry["resource"]["resourceType"] == "Patient":
                ids.add(entry["resource"]["id"])
    for path in folder.glob("Patient*.ndjson"):
        ids |= {json.loads(line)["id"] for line in path.read_text("utf-8").splitlines() if line.strip()}
    return ids


@pytest.mark.samples
def test_simulate_over_the_synthea_samples(capsys):
    bundles, bulk = SAMPLES / "synthea_r4_bundles_smart", SAMPLES / "synthea_r4_bulk_ndjson_smart"
    if not (bundles.is_dir() and bulk.is_dir()):
        pytest.skip(f"{SAMPLES} not present")
    expected = len(_sample_patient_ids(bundles)) + len(_sample_patient_ids(bulk))
    code, out, err = run(capsys, "simulate", str(bundles), str(bulk), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["patients"] == expected and report["answered"] == expected
    assert report["errors"] == [] and report["skipped"] == []
    assert report["rules"] and all(r["evaluated"] == expected and r["failed"] == 0 for r in report["rules"])
    assert report["timing"]["p95Ms"] >= report["timing"]["p50Ms"] > 0


# -- load-fixtures ----------------------------------------------------------------------------

class RecordingFhir:
    """A loopback 'FHIR server' that records the transactions POSTed to its base and answers as HAPI does."""

    def __init__(self, status: int = 200):
        self.calls: list[tuple[str, str, dict]] = []
        self.app = Flask("recording-fhir")
        self.app.add_url_rule("/fhir", "base", self.base, methods=["POST"])
        self.status = status

    def base(self) -> Response:
        body = json.loads(request.get_data())
        self.calls.append((request.path, request.content_type, body))
        if self.status != 200:
            outcome = {"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-0541: bad ref"}]}
            return Response(json.dumps(outcome), self.status, mimetype="application/fhir+json")
        reply = {"resourceType": "Bundle", "type": "transaction-response",
                 "entry": [{"response": {"status": "201 Created"}} for _ in body.get("entry", [])]}
        return Response(json.dumps(reply), mimetype="application/fhir+json")


def _references(value) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "reference" and isinstance(v, str)] + [
            r for k, v in value.items() if k != "reference" for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def _fixture_resources() -> dict[str, dict]:
    """Every record resource of the fixture files, read directly (first of a Type/id wins)."""
    out: dict[str, dict] = {}
    for path in sorted(FIXTURES_DIR.glob("*.json")):
        if path.name == "index.json":
            continue
        data = json.loads(path.read_text("utf-8"))
        for entry in data.get("entry", []):
            res = entry["resource"]
            if not is_draft_order(res):
                out.setdefault(f"{res['resourceType']}/{res['id']}", res)
    return out


def test_load_fixtures_puts_every_fixture_resource_in_one_transaction(capsys, monkeypatch):
    monkeypatch.delenv("CDSHOOKS_FIXTURES_DIR", raising=False)
    server = RecordingFhir()
    with serve_wsgi(server.app) as base:
        code, out, err = run(capsys, "load-fixtures", f"{base}/fhir/")
    assert code == 0, err
    assert len(server.calls) == 1
    path, content_type, sent = server.calls[0]
    assert path == "/fhir" and content_type == "application/fhir+json"
    assert sent["resourceType"] == "Bundle" and sent["type"] == "transaction"
    expected = _fixture_resources()
    stubs = {ref for res in expected.values() for ref in _references(res)
             if ref.split("/")[0] in ("Practitioner", "Organization") and ref not in expected}
    urls = [e["request"]["url"] for e in sent["entry"]]
    assert sorted(urls) == sorted(set(expected) | stubs)
    assert all(e["resource"] == {"resourceType": e["request"]["url"].split("/")[0],
                                 "id": e["request"]["url"].split("/")[1]}
               for e in sent["entry"] if e["request"]["url"] in stubs)
    assert all(e["request"]["method"] == "PUT" for e in sent["entry"])
    assert all(f"{e['resource']['resourceType']}/{e['resource']['id']}" == e["request"]["url"] for e in sent["entry"])
    text = json.dumps(sent)
    assert "$now" not in text and "$today" not in text
    assert not any(is_draft_order(e["resource"]) for e in sent["entry"])
    patients = sum(1 for k in expected if k.startswith("Patient/"))
    total = len(expected) + len(stubs)
    assert out.strip() == f"loaded {total} resources ({patients} patients) into {base}/fhir: {total} x 201"


def test_load_fixtures_from_a_folder_and_server_errors(capsys, tmp_path):
    folder = tmp_path / "fx"
    folder.mkdir()
    obs = {**potassium_obs("k1", "p1", "$now-1d"), "performer": [{"reference": "Practitioner/dr-x"}],
           "derivedFrom": [{"reference": "Observation/elsewhere"}]}
    write(folder / "one.json", bundle(patient("p1"), obs))
    server = RecordingFhir()
    with serve_wsgi(server.app) as base:
        code, out, err = run(capsys, "load-fixtures", f"{base}/fhir", "--dir", str(folder))
    assert code == 0 and out.startswith(f"loaded 3 resources (1 patients) into {base}/fhir")
    assert err.strip() == "cdshooks load-fixtures: warning: Observation/elsewhere is referenced but not in the fixtures"
    sent = server.calls[0][2]
    assert [e["request"]["url"] for e in sent["entry"]] == ["Patient/p1", "Observation/k1", "Practitioner/dr-x"]
    assert sent["entry"][1]["resource"]["effectiveDateTime"].endswith("Z")
    assert sent["entry"][2]["resource"] == {"resourceType": "Practitioner", "id": "dr-x"}

    failing = RecordingFhir(status=400)
    with serve_wsgi(failing.app) as base:
        code, _, err = run(capsys, "load-fixtures", f"{base}/fhir", "--dir", str(folder))
    assert code == 2 and err.splitlines()[-1] == f"cdshooks load-fixtures: {base}/fhir answered 400: HAPI-0541: bad ref"

    with serve_wsgi(server.app) as base:
        dead = base
    code, _, err = run(capsys, "load-fixtures", f"{dead}/fhir", "--dir", str(folder), "--timeout", "2")
    assert code == 2 and err.splitlines()[-1] == f"cdshooks load-fixtures: cannot reach {dead}/fhir: ConnectionError"
    code, _, err = run(capsys, "load-fixtures", f"{dead}/fhir", "--dir", str(tmp_path / "absent"))
    assert code == 2 and "no fixture folder" in err


def test_rules_lists_titles_and_prints_one_rules_clinical_documentation(capsys):
    assert main(["rules"]) == 0
    table = capsys.readouterr().out
    assert "lgi1-immunotherapy" in table and "an old positive: re-test" in table and "source:" in table
    assert main(["rules", "lgi1-immunotherapy"]) == 0
    doc = capsys.readouterr().out
    assert "When it fires" in doc and "What changed and why" in doc and "antibody_result_days" in doc
    assert main(["rules", "no-such-rule"]) == 2
