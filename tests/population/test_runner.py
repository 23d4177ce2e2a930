"""The local population runner: grouping by patient from Bundles, NDJSON and .ndjson.gz, the same cards as
``Engine.evaluate``, several processes, the checkpoint, history replay, and the outputs (NDJSON, summary, HTML)."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdshooks.config import Settings
from cdshooks.fhir.bundles import patients
from cdshooks.population.evaluation import Evaluator, resource_instant
from cdshooks.population.simulation import simulate
from cdshooks.population.sources import ReadTask, input_files, read_tasks, task_resources
from cdshooks.population.summary import wilson
from cdshooks.service.engine import Engine
from cdshooks.tryit.fixtures import FIXTURES_DIR, scenarios

from ..probe_rules import ORDERS, POTASSIUM

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
WARNINGS: list[str] = []


def _run(paths, tmp_path, **kw):
    kw.setdefault("jobs", 1)
    return simulate([str(p) for p in paths], kw.pop("hook", "patient-view"), NOW, kw.pop("orders", None),
                    WARNINGS.append, out=str(tmp_path / "out"), stream=io.StringIO(), **kw)


def _cards(tmp_path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in (tmp_path / "out" / "cards.ndjson").read_text("utf-8").splitlines():
        row = json.loads(line)
        found.setdefault(row["patient"], set()).add(row["rule"])
    return found


def _fixture_patients() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for sc in scenarios():
        out.update(patients(sc.bundle(NOW)))
    return out


def _as_ndjson(folder: Path, resources: list[dict], gz: bool = False) -> None:
    """Bulk Data style: one file per resource type (gzipped when asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    for rtype, lines in by_type.items():
        text = "\n".join(lines) + "\n"
        if gz:
            (folder / f"{rtype}.000.ndjson.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (folder / f"{rtype}.000.ndjson").write_text(text, "utf-8")


def test_the_runner_gives_every_fixture_patient_the_cards_of_evaluate(tmp_path):
    report, failed = _run([FIXTURES_DIR], tmp_path, jobs=2)
    assert not failed and report["errors"] == []
    engine = Engine(Settings.from_env(auth="off", database_url="sqlite://"), None)
    expected = {}
    for pid, resources in _fixture_patients().items():
        rules = {c["source"]["topic"]["code"] for c in engine.evaluate("patient-view", resources, NOW).cards}
        if rules:
            expected[pid] = rules
    assert _cards(tmp_path) == expected
    assert report["patients"] == len(_fixture_patients()) and report["answered"] == report["patients"]
    assert not (tmp_path / "out" / "work").exists()  # a finished run leaves no work folder behind


def test_ndjson_gz_and_bundles_group_alike(tmp_path):
    everyone = [r for res in _fixture_patients().values() for r in res]
    _as_ndjson(tmp_path / "gz", everyone, gz=True)
    bundles, _ = _run([FIXTURES_DIR], tmp_path / "a")
    gzipped, _ = _run([tmp_path / "gz"], tmp_path / "b", jobs=2)
    assert gzipped["rules"] == bundles["rules"] and gzipped["patients"] == bundles["patients"]
    assert _cards(tmp_path / "a") == _cards(tmp_path / "b")


def test_byte_ranges_read_every_line_once(tmp_path):
    everyone = [r for res in _fixture_patients().values() for r in res]
    _as_ndjson(tmp_path / "bulk", everyone)
    files = input_files([str(tmp_path / "bulk")])
    wanted = frozenset({r["resourceType"] for r in everyone})
    whole = [r.text for t in read_tasks(files) for r in task_resources(t, wanted, NOW, [])]
    tasks = read_tasks(files, chunk_bytes=997)
    assert len(tasks) > 20
    pieces = [r.text for t in tasks for r in task_resources(t, wanted, NOW, [])]
    assert sorted(pieces) == sorted(whole) and len(whole) == len(everyone)


def test_unwanted_types_are_skipped_and_bad_lines_reported(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_text('{"resourceType":"Claim","id":"c","patient":{"reference":"Patient/p"}}\n'
                    '{"resourceType":"Patient","id":"p"}\nnot json\n', "utf-8")
    problems: list = []
    kept = list(task_resources(ReadTask((str(path),), (True,)), frozenset({"Patient"}), NOW, problems))
    assert [(r.rtype, r.patient) for r in kept] == [("Patient", "p")]
    assert problems and "1 line(s) are not JSON" in problems[0][1]


def test_a_medication_without_patient_reaches_the_patients_that_reference_it(tmp_path, probe_rules):
    """Bulk exports put Medications in their own file; the runner attaches those a patient's orders reference."""
    med = {"resourceType": "Medication", "id": "med-1", "code": {"text": "Potassium chloride"}}
    resources = [{"resourceType": "Patient", "id": "p1"}, med,
                 {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order",
                  "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "Medication/med-1"}}]
    _as_ndjson(tmp_path / "bulk", resources)
    report, _ = _run([tmp_path / "bulk"], tmp_path, hook="order-sign")
    assert report["answered"] == 1
    from cdshooks.population.workstore import ShardReader
    # the grouped store hands the Medication to the patient
    _run([tmp_path / "bulk"], tmp_path / "kept", hook="order-sign", keep_work=True)
    reader = ShardReader(sorted((tmp_path / "kept" / "out" / "work").glob("shard-*.sqlite")))
    assert {r["resourceType"] for r in reader.resources("p1")} == {"Patient", "MedicationRequest", "Medication"}
    reader.close()


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    work = tmp_path / "work"
    first, _ = _run([FIXTURES_DIR], tmp_path / "a", work=str(work), keep_work=True)
    db = sqlite3.connect(work / "run.sqlite")
    total = db.execute("SELECT count(*) FROM units").fetchone()[0]
    # as if the run had stopped after the first 30 patients: their results stay, the others are gone
    db.execute("DELETE FROM cards WHERE call IN (SELECT id FROM calls WHERE unit > 30)")
    db.execute("DELETE FROM calls WHERE unit > 30")
    db.execute("UPDATE units SET done = 0 WHERE seq > 30")
    db.commit()
    db.close()
    stream = io.StringIO()
    second, _ = simulate([str(FIXTURES_DIR)], "patient-view", NOW, None, WARNINGS.append, jobs=1,
                         out=str(tmp_path / "b"), work=str(work), stream=stream)
    log = stream.getvalue()
    assert f"resuming: 30 of {total} patients already evaluated" in log
    assert "reading" not in log  # grouping is not repeated
    assert second["rules"] == first["rules"] and second["calls"] == first["calls"] == total


def test_a_changed_run_does_not_resume_an_old_checkpoint(tmp_path):
    work = tmp_path / "work"
    _run([FIXTURES_DIR], tmp_path / "a", work=str(work), keep_work=True)
    stream = io.StringIO()
    simulate([str(FIXTURES_DIR)], "patient-view", NOW.replace(year=2027), None, WARNINGS.append, jobs=1,
             work=str(work), stream=stream)
    assert "starting afresh" in stream.getvalue() and "resuming" not in stream.getvalue()


def test_progress_is_shown_while_reading_grouping_and_evaluating(tmp_path):
    stream = io.StringIO()
    simulate([str(FIXTURES_DIR)], "patient-view", NOW, None, WARNINGS.append, jobs=2, stream=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("simulate: reading ") and "with 2 process(es)" in lines[0]
    assert any(line.startswith("simulate: grouped ") for line in lines)
    assert lines[-1].startswith(f"simulate: {len(_fixture_patients())}/{len(_fixture_patients())} patients (100%)")


def test_outputs_cards_summary_and_an_offline_html_report(tmp_path):
    report, _ = _run([FIXTURES_DIR], tmp_path)
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "cards.ndjson").read_text("utf-8").splitlines()]
    assert rows and all({"patient", "at", "rule", "indicator", "summary", "suggestedOrders"} <= set(r) for r in rows)
    mnd = next(r for r in rows if r["rule"] == "mnd-red-flag")
    assert {"308474002", "42803009"} <= {c["code"] for o in mnd["suggestedOrders"] for c in o.get("codings", [])}
    assert json.loads((out / "summary.json").read_text("utf-8")) == report
    html = (out / "report.html").read_text("utf-8")
    assert html.count("<svg") == 3 and "mnd-red-flag" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    row = next(r for r in report["rules"] if r["rule"] == "mnd-red-flag")
    low, high = wilson(row["patients"], row["evaluated"])
    assert row["rateLow"] == round(low, 4) < row["rate"] < row["rateHigh"] == round(high, 4)
    assert report["indicators"]["critical"] >= row["cards"]
    assert sum(report["cardsPerPatient"].values()) == report["patients"]


def test_wilson_interval():
    assert wilson(0, 0) == (0.0, 0.0)
    low, high = wilson(0, 100)
    assert abs(low) < 1e-12 and abs(high - 0.0370) < 1e-4
    low, high = wilson(50, 100)
    assert abs(low - 0.4038) < 1e-4 and abs(high - 0.5962) < 1e-4


# -- order hooks replayed from history ---------------------------------------------------------

def _obs(oid: str, when: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": "Patient/h"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}, "effectiveDateTime": when,
            "valueQuantity": {"value": 3.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}


def _order(oid: str, when: str | None, rtype: str = "MedicationRequest") -> dict:
    order = {"resourceType": rtype, "id": oid, "status": "completed", "intent": "order",
             "subject": {"reference": "Patient/h"}}
    if rtype == "MedicationRequest":
        order["medicationCodeableConcept"] = {"text": "Baclofen 10 mg"}
    else:
        order["code"] = {"text": "EMG"}
    if when:
        order["authoredOn"] = when
    return order


def test_replay_evaluates_each_historical_order_against_the_record_as_it_stood(probe_rules):
    resources = [{"resourceType": "Patient", "id": "h"},
                 _obs("k-2020", "2020-05-03T08:00:00Z"),      # 2 days before the first order
                 _order("mr-2020", "2020-05-05T10:00:00Z"),
                 _order("sr-2022", "2022-01-10", "ServiceRequest"),
                 _obs("k-2022", "2022-01-12T08:00:00Z"),      # after the second order: not yet in its record
                 _order("undated", None)]
    results = Evaluator("order-sign", NOW, replay=True).patient("h", resources)
    assert [(r["order"], r["at"]) for r in results] == [("MedicationRequest/mr-2020", "2020-05-05T10:00:00Z"),
                                                        ("ServiceRequest/sr-2022", "2022-01-10T00:00:00Z")]
    first, second = ({c["rule"]: c for c in r["cards"]} for r in results)
    assert first[ORDERS]["summary"] == "Probe: judged MedicationRequest/mr-2020"
    assert POTASSIUM in first          # the 2020 potassium was 2 days old then
    assert POTASSIUM not in second     # the 2022 potassium came 2 days after the order
    assert second[ORDERS]["summary"] == "Probe: judged ServiceRequest/sr-2022"


def test_replay_through_the_runner(tmp_path, probe_rules):
    resources = [{"resourceType": "Patient", "id": "h"}, _order("mr-2020", "2020-05-05T10:00:00Z"),
                 _order("mr-2021", "2021-05-05T10:00:00Z"), {"resourceType": "Patient", "id": "none"}]
    _as_ndjson(tmp_path / "bulk", resources)
    report, _ = _run([tmp_path / "bulk"], tmp_path, hook="order-select", replay=True)
    assert report["patients"] == 2 and report["calls"] == 3 and report["answered"] == 2
    assert report["skipped"] == [{"reason": "no orders with authoredOn in the history", "patients": 1}]
    rows = [json.loads(line) for line in (tmp_path / "out" / "cards.ndjson").read_text().splitlines()]
    assert sorted(r["order"] for r in rows if r["rule"] == ORDERS) == ["MedicationRequest/mr-2020",
                                                                       "MedicationRequest/mr-2021"]


def test_resource_instant():
    assert resource_instant({"authoredOn": "2020-05-05"}) == datetime(2020, 5, 5, tzinfo=timezone.utc)
    assert resource_instant({"performedPeriod": {"start": "2021-01-01T10:00:00+02:00"}}) == datetime(
        2021, 1, 1, 8, tzinfo=timezone.utc)
    assert resource_instant({"effectiveDateTime": "garbage"}) is None
    assert resource_instant({"resourceType": "Patient"}) is None


@pytest.mark.parametrize("jobs", [1, 2])
def test_bad_given_file_is_an_input_error(tmp_path, jobs):
    from cdshooks.service.hook_request import InputError

    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    with pytest.raises(InputError, match="is not JSON"):
        _run([bad], tmp_path, jobs=jobs)


# -- what reading counted; Parquet; a reading phase killed and resumed ----------------------------

def test_reading_counts_in_the_summary_the_printout_and_the_report(tmp_path, capsys):
    from cdshooks.cli import main

    bulk = tmp_path / "bulk"
    _as_ndjson(bulk, [{"resourceType": "Patient", "id": "p1"},
                      {"resourceType": "Medication", "id": "m1", "code": {"text": "Baclofen"}}])
    (bulk / "Odd.000.ndjson").write_text(
        'not json\n{"id": "no-type"}\n{"resourceType": "Condition", "id": "c0"}\n'
        '{"resourceType": "Claim", "id": "c1", "patient": {"reference": "Patient/p1"}}\n\n', "utf-8")
    code = main(["simulate", str(bulk), "--now", NOW.isoformat(), "--out", str(tmp_path / "out"), "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    reading = json.loads((tmp_path / "out" / "summary.json").read_text())["reading"]
    assert reading == {"read": 6, "kept": 2, "shared": 1, "dropped": 1, "unreadable": 3, "notJson": 1,
                       "noResourceType": 1, "noPatient": 1}
    assert ("read 6 lines/resources: 2 kept (1 without a patient, such as Medications), 1 dropped (types no rule "
            "reads), 3 unreadable (1 not JSON, 1 without resourceType, 1 without a patient reference)") in out
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Input read</h2>" in html and "<td>6</td><td>2</td><td>1</td><td>1</td><td>1</td><td>1</td>" in html


def test_parquet_cards_hold_the_rows_of_cards_ndjson(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    _run([FIXTURES_DIR], tmp_path / "nd")
    _run([FIXTURES_DIR], tmp_path / "pq", fmt="parquet")
    assert not (tmp_path / "pq" / "out" / "cards.ndjson").exists()
    rows = pq.read_table(tmp_path / "pq" / "out" / "cards.parquet").to_pylist()
    expected = [json.loads(line) for line in (tmp_path / "nd" / "out" / "cards.ndjson").read_text().splitlines()]
    assert len(rows) == len(expected) > 0
    for row, want in zip(rows, expected):
        assert row["order"] is None and {k: v for k, v in row.items() if k != "order"} == {
            **{k: want[k] for k in ("patient", "at", "rule", "indicator", "summary")},
            "suggestedOrders": [{"label": o.get("label"), "action": o.get("action"),
                                 "resourceType": o.get("resourceType"),
                                 "codings": [{"system": c.get("system"), "code": c.get("code"),
                                              "display": c.get("display")} for c in o.get("codings", [])]
                                 if "codings" in o else None,
                                 "text": o.get("text"), "resourceId": o.get("resourceId")}
                                for o in want["suggestedOrders"]]}


def _big_population(folder: Path, copies: int) -> None:
    """The fixture patients ``copies`` times over with new ids, as Bulk NDJSON."""
    templates = _fixture_patients()
    folder.mkdir(parents=True)
    files: dict[str, list[str]] = {}
    for n in range(copies):
        for pid, resources in templates.items():
            for r in resources:
                files.setdefault(r["resourceType"], []).append(json.dumps(r).replace(pid, f"{pid}-{n}"))
    for rtype, lines in files.items():
        (folder / f"{rtype}.000.ndjson").write_text("\n".join(lines) + "\n", "utf-8")


def test_a_run_killed_while_reading_resumes_reading_where_it_stopped(tmp_path):
    """A real run in another process, killed (SIGKILL) in the middle of its reading phase, then started again:
    the read tasks already in the shards are not read again, the one cut short is rolled back and read again,
    and the result is that of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from cdshooks.population.workstore import finished_tasks

    bulk, work = tmp_path / "bulk", tmp_path / "work"
    _big_population(bulk, 25)
    size = sum(p.stat().st_size for p in bulk.iterdir())
    script = ("import io, sys\nfrom datetime import datetime\nfrom cdshooks.population.simulation import simulate\n"
              f"simulate([{str(bulk)!r}], 'patient-view', datetime.fromisoformat({NOW.isoformat()!r}), None, "
              f"lambda m: None, jobs=1, work={str(work)!r}, keep_work=True, read_chunk=8192, stream=sys.stderr)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            shards = list(work.glob("shard-*.sqlite"))
            if shards and shards[0].stat().st_size > size // 10:
                break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    tasks = read_tasks(input_files([str(bulk)]), 8192)
    done = len(finished_tasks(sorted(work.glob("shard-*.sqlite"))))
    assert 0 < done < len(tasks), "the run was not killed while reading"
    stream = io.StringIO()
    resumed, _ = simulate([str(bulk)], "patient-view", NOW, None, WARNINGS.append, jobs=2, work=str(work),
                          out=str(tmp_path / "resumed"), read_chunk=8192, stream=stream)
    assert f"resuming reading: {done} of {len(tasks)} part(s) already read" in stream.getvalue()
    whole, _ = simulate([str(bulk)], "patient-view", NOW, None, WARNINGS.append, jobs=2,
                        out=str(tmp_path / "whole"), read_chunk=8192, stream=io.StringIO())
    assert resumed["reading"] == whole["reading"] and resumed["reading"]["read"] > 0
    assert resumed["rules"] == whole["rules"] and resumed["patients"] == whole["patients"] == 25 * len(
        _fixture_patients())
    assert sorted((tmp_path / "resumed" / "cards.ndjson").read_text().splitlines()) == sorted(
        (tmp_path / "whole" / "cards.ndjson").read_text().splitlines())
