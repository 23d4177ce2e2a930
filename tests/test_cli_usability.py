"""`cdshooks` papercuts: evaluate over a Bulk export (a folder or several NDJSON files) and what it
read, dropped and could not read; relative dates in --orders; the rules table (header, terminal
width); a closed pipe; --version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdshooks.cli import main
from cdshooks.fhir.bundles import load_bundle
from cdshooks.service.hook_request import hook_request, reading

from .conftest import REPO

DEMO = "demo-twitching-weakness"
NOW = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)


def _bulk_export(folder: Path) -> Path:
    """The demo patient as a Bulk Data export: one NDJSON file per type, plus one line that is not JSON."""
    bundle = load_bundle(REPO / "fhir_fixtures" / f"{DEMO}.json", NOW)
    by_type: dict[str, list[dict]] = defaultdict(list)
    for entry in bundle["entry"]:
        by_type[entry["resource"]["resourceType"]].append(entry["resource"])
    folder.mkdir()
    for rtype, resources in by_type.items():
        (folder / f"{rtype}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    with (folder / "Observation.ndjson").open("a") as f:
        f.write("{not json\n")
    return folder


def _evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *args, "--now", "2026-03-01T09:00:00Z"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_bulk_export_folder_or_all_its_files(tmp_path, capsys):
    export = _bulk_export(tmp_path / "export")
    code, out, err = _evaluate(capsys, str(export), "--json")
    assert code == 0, err
    fired = {c["source"]["topic"]["code"] for c in json.loads(out)["cards"]}
    assert "mnd-red-flag" in fired
    total = sum(1 for f in export.glob("*.ndjson") for line in f.read_text().splitlines() if line.startswith("{\""))
    assert f"Read {total} resources: " in err and ", 1 unreadable." in err
    files = sorted(str(p) for p in export.glob("*.ndjson"))
    code, out2, err2 = _evaluate(capsys, *files, "--json")
    assert code == 0 and {c["source"]["topic"]["code"] for c in json.loads(out2)["cards"]} == fired


def test_one_type_file_of_a_bulk_export_is_refused_with_a_hint(tmp_path, capsys):
    export = _bulk_export(tmp_path / "export")
    for name in ("Patient.ndjson", "Condition.ndjson"):
        code, out, err = _evaluate(capsys, str(export / name))
        assert code == 2 and out == ""
        assert "one file of a Bulk export" in err and "give the folder" in err


def test_the_reading_counts_say_what_was_sent_and_dropped():
    data = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p"}},
        {"resource": {"resourceType": "Patient", "id": "q"}},
        {"resource": {"resourceType": "Encounter", "id": "e", "status": "finished", "subject": {"reference": "Patient/p"}}},
        {"resource": {"resourceType": "Observation", "id": "o", "status": "final", "subject": {"reference": "Patient/q"},
                      "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}}},
        {"fullUrl": "urn:uuid:x"},
    ]}
    request = hook_request(data, "patient-view", {"patient": "Patient/{{context.patientId}}",
                                                 "observations": "Observation?patient={{context.patientId}}"},
                           now=NOW, patient_id="p")
    counts = reading(data, request)
    assert counts == {"patient": "p", "hook": "patient-view", "resources": 4, "sent": 1, "dropped": 3, "unreadable": 1}


def test_relative_dates_in_given_orders_are_resolved():
    data = {"resourceType": "Patient", "id": "p"}
    order = {"resourceType": "MedicationRequest", "id": "o1", "status": "draft", "intent": "order",
             "authoredOn": "$now-3d", "medicationCodeableConcept": {"text": "baclofen 10 mg oral tablet"}}
    request = hook_request(data, "order-sign", {}, now=NOW, orders=[order])
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    assert draft["authoredOn"] == "2026-02-26T09:00:00Z"
    assert draft["subject"] == {"reference": "Patient/p"}


def test_evaluate_with_relative_dates_in_orders(tmp_path, capsys):
    orders = tmp_path / "orders.json"
    orders.write_text(json.dumps({"resourceType": "MedicationRequest", "id": "o1", "status": "draft",
                                  "intent": "order", "authoredOn": "$now-3d",
                                  "medicationCodeableConcept": {"text": "baclofen 10 mg oral tablet"}}))
    code, out, err = _evaluate(capsys, str(REPO / "fhir_fixtures" / f"{DEMO}.json"), "--hook", "order-sign",
                               "--orders", str(orders), "--json")
    assert code == 0, err
    bad = tmp_path / "bad-orders.json"
    bad.write_text(json.dumps({"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
                               "authoredOn": "$now-3x"}))
    code, out, err = _evaluate(capsys, str(REPO / "fhir_fixtures" / f"{DEMO}.json"), "--hook", "order-sign",
                               "--orders", str(bad))
    assert code == 2 and "malformed relative date" in err


def test_the_rules_table_has_a_header_and_fits_the_terminal(capsys, monkeypatch):
    for width in (80, 160):
        monkeypatch.setenv("COLUMNS", str(width))
        assert main(["rules"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["rule", "indicator", "hooks", "title", "and", "source"]
        assert set(lines[1].replace(" ", "")) == {"-"}
        assert max(len(line) for line in lines) <= width
        assert any(line.startswith("mnd-red-flag ") for line in lines)


def _cli() -> list[str]:
    return [sys.executable, "-c", "import sys; from cdshooks.cli import main; sys.exit(main())"]


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([*_cli(), "rules"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200"})
    proc.stdout.close()  # as `| head` does once it has what it wants
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("cdshooks ")
