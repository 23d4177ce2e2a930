"""The Spark runner in local mode: the same patients, cards and counts as the local runner, from NDJSON
(gzipped too) and Bundles; per-card NDJSON part files, summary and HTML report. Skips where Java or
pyspark is missing."""

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


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """The fixture patients: half as gzipped Bulk NDJSON (one file per type), half as their Bundles."""
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
    parts = sorted((root / "spark" / "cards").glob("part-*"))
    assert parts and _rows(parts) == _rows([root / "local" / "cards.ndjson"])
    assert json.loads((root / "spark" / "summary.json").read_text())["rules"] == local["rules"]
    assert "<svg" in (root / "spark" / "report.html").read_text()
    assert spark["timing"]["engine"] == "spark" and spark["timing"]["p95Ms"] >= spark["timing"]["p50Ms"] > 0

