"""The Spark runner in local mode: the same patients, cards, counts and reading counts as the local runner, from
NDJSON (gzipped too) and Bundles; per-card NDJSON part files or Parquet, summary and HTML report (through Hadoop's
FileSystem for a path with a scheme); the error paths (unreadable lines, a rule that raises, a missing path).
One SparkSession for the module. Skips where Java or pyspark is missing."""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime, timezone

import pytest

from cdshooks.cli import main
from cdshooks.fhir.bundles import patients
from cdshooks.population.simulation import simulate
from cdshooks.population.spark_runner import java_problem
from cdshooks.tryit.fixtures import scenarios

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)

if java_problem():
    pytest.skip(f"Spark cannot run here: {java_problem()}", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def spark_session():
    """One local session for every test here: the runner uses an active session and leaves it running."""
    from cdshooks.population.spark_runner import _session

    spark = _session("local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """The fixture patients: half as gzipped Bulk NDJSON (one file per type), half as their Bundles; plus lines
    that cannot be read (not JSON, no resourceType, no patient reference) and a type no rule reads."""
    root = tmp_path_factory.mktemp("spark")
    bulk, bundles = root / "bulk", root / "bundles"
    bulk.mkdir()
    bundles.mkdir()
    by_type: dict[str, list[str]] = {}
    seen: set[str] = set()
    for n, sc in enumerate(scenarios()):
        for pid, resources in patients(sc.bundle(NOW)).items():
            if pid in seen:
                continue
            seen.add(pid)
            if n % 2:
                (bundles / f"{pid}.json").write_text(json.dumps(
                    {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}))
            else:
                for r in resources:
                    by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    for rtype, lines in by_type.items():
        (bulk / f"{rtype}.000.ndjson.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    (bulk / "Odd.000.ndjson").write_text(
        '{"resourceType": "Observation", "id": "cut-short", "subject": {"reference": "Pat\n'
        '{"id": "no-type"}\n'
        '{"resourceType": "Observation", "id": "nobody", "status": "final"}\n'
        '{"resourceType": "Claim", "id": "c1", "patient": {"reference": "Patient/x"}}\n', "utf-8")
    return root, [str(bulk), str(bundles)], len(seen)


def _rows(paths) -> set[tuple[str, str, str]]:
    return {(r["patient"], r["rule"], r["summary"]) for p in paths for r in map(json.loads, p.read_text().splitlines())}


def test_spark_gives_the_local_runners_cards_and_counts(population, capsys):
    root, inputs, count = population
    local, _ = simulate(inputs, "patient-view", NOW, None, lambda m: None, jobs=1, out=str(root / "local"),
                        stream=io.StringIO())
    code = main(["simulate", *inputs, "--engine", "spark", "--master", "local[2]", "--now", NOW.isoformat(),
                 "--out", str(root / "spark"), "--json"])
    spark = json.loads(capsys.readouterr().out)
    assert code == 0 and spark["patients"] == local["patients"] == count
    assert spark["rules"] == local["rules"] and spark["indicators"] == local["indicators"]
    assert spark["cardsPerPatient"] == local["cardsPerPatient"] and spark["anyCard"] == local["anyCard"]
    # what was read, kept, dropped and could not be read: counted alike by both runners
    assert spark["reading"] == local["reading"]
    assert local["reading"]["notJson"] == 1 and local["reading"]["noResourceType"] == 1
    assert local["reading"]["noPatient"] == 1 and local["reading"]["dropped"] >= 1
    assert local["reading"]["read"] == (local["reading"]["kept"] + local["reading"]["dropped"]
                                        + local["reading"]["unreadable"])
    parts = sorted((root / "spark" / "cards").glob("part-*"))
    assert parts and _rows(parts) == _rows([root / "local" / "cards.ndjson"])
    assert json.loads((root / "spark" / "summary.json").read_text())["rules"] == local["rules"]
    html = (root / "spark" / "report.html").read_text()
    assert "<svg" in html and "no patient reference" in html
    assert spark["timing"]["engine"] == "spark" and spark["timing"]["p95Ms"] >= spark["timing"]["p50Ms"] > 0


def test_parquet_cards_and_a_summary_written_through_hadoop_filesystem(population):
    """``--format parquet``: Spark's own Parquet writer, the same rows as NDJSON; an output path with a scheme
    gets summary.json and report.html through Hadoop's FileSystem."""
    import pyarrow.parquet as pq

    from cdshooks.population.spark_runner import simulate_spark

    root, inputs, _ = population
    simulate(inputs, "patient-view", NOW, None, lambda m: None, jobs=1, out=str(root / "local-nd"),
             stream=io.StringIO())
    out = root / "spark-parquet"
    report, _ = simulate_spark(inputs, "patient-view", NOW, None, out=out.as_uri(), fmt="parquet")
    table = pq.read_table(out / "cards")
    assert table.column_names == ["patient", "at", "order", "rule", "indicator", "summary", "suggestedOrders"]
    rows = table.to_pylist()
    assert {(r["patient"], r["rule"], r["summary"]) for r in rows} == _rows([root / "local-nd" / "cards.ndjson"])
    nd = {(r["patient"], r["rule"]): r["suggestedOrders"] for r in
          map(json.loads, (root / "local-nd" / "cards.ndjson").read_text().splitlines())}
    mnd = next(r for r in rows if r["rule"] == "mnd-red-flag")
    assert [o["label"] for o in mnd["suggestedOrders"]] == [o["label"] for o in nd[(mnd["patient"], mnd["rule"])]]
    assert json.loads((out / "summary.json").read_text()) == {k: v for k, v in report.items() if k != "written"}
    assert "<svg" in (out / "report.html").read_text()
    assert report["written"] == [f"{out.as_uri()}/summary.json", f"{out.as_uri()}/report.html"]


def test_a_rule_that_raises_in_a_worker_is_counted_and_fails_the_run(population):
    from pyspark import cloudpickle

    from cdshooks.population.spark_runner import simulate_spark

    from . import raising_rule

    cloudpickle.register_pickle_by_value(raising_rule)
    try:
        report, failed = simulate_spark(population[1], "patient-view", NOW, None,
                                        factory=raising_rule.raising_evaluator)
    finally:
        cloudpickle.unregister_pickle_by_value(raising_rule)
    row = next(r for r in report["rules"] if r["rule"] == raising_rule.RAISES)
    assert failed and row["failed"] == report["answered"] == population[2] and row["evaluated"] == 0
    others = [r for r in report["rules"] if r["rule"] != raising_rule.RAISES]
    assert any(r["cards"] for r in others)  # the other rules still gave their cards


def test_a_missing_path_and_an_existing_output_are_one_line_errors(population, tmp_path, capsys):
    root, inputs, _ = population
    code = main(["simulate", str(tmp_path / "absent"), "--engine", "spark", "--now", NOW.isoformat()])
    err = capsys.readouterr().err
    assert code == 2 and "absent: no such file or folder" in err and "Traceback" not in err
    code = main(["simulate", "file://" + str(tmp_path / "absent-too"), "--engine", "spark", "--now",
                 NOW.isoformat()])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cdshooks simulate: the Spark job failed: ") and len(err.splitlines()) == 1
    (tmp_path / "taken" / "cards").mkdir(parents=True)
    code = main(["simulate", *inputs, "--engine", "spark", "--now", NOW.isoformat(), "--out", str(tmp_path / "taken")])
    err = capsys.readouterr().err
    assert code == 2 and "the Spark job failed" in err and len(err.splitlines()) == 1
