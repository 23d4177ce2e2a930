"""The Spark population runner: ``cdshooks simulate --engine spark [--master URL]``.

Spark reads the input (local, HDFS or object-store paths, as Spark reads them; ``.gz`` is
decompressed by Spark), groups the resources by patient (``groupByKey``) and evaluates each
patient in the Python workers with the same ``evaluation.Evaluator`` as the local runner, so both
runners, and the service, give the same cards. Then it writes:

* ``<out>/cards/``: Spark's part files of ``cards.ndjson`` rows (one per card);
* ``<out>/summary.json`` and ``<out>/report.html`` (written by the driver; ``out`` is a local folder
  unless it has a scheme such as ``hdfs://``, then the summary is written there by Spark as ``summary/``).

Resources that belong to no patient (Medications a Bulk export lists on their own) are
collected by the driver and broadcast to the workers: they are few (one per product).

The workers need this package installed (``pip install 'cdshooks[spark]'`` on every node, or
``--py-files`` with a wheel). Run it with ``cdshooks simulate --engine spark --master spark://host:7077``
or ``spark-submit cdshooks/spark_submit.py simulate ...``; with neither ``--master`` nor
spark-submit's master it runs in local mode on every core (``local[*]``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from ..service.hook_request import InputError
from .evaluation import Evaluator
from .htmlreport import html_report
from .sources import Resource, _kept, input_files
from .summary import Counts, summarize

__all__ = ["simulate_spark", "java_problem"]

_REFERENCE_FIELD = '"reference"'
_HEAD = re.compile(r'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"')


def java_problem() -> str | None:
    """Why Spark cannot start here (no pyspark, no Java), or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'cdshooks[spark]')"
    import shutil

    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").exists()) and shutil.which("java") is None:
        return "Spark needs Java (17 or later): no java on PATH and JAVA_HOME not set"
    return None


def _is_remote(path: str) -> bool:
    scheme = urlparse(path).scheme
    return len(scheme) > 1 and scheme != "file"


def _split_inputs(paths: list[str]) -> tuple[list[str], list[str]]:
    """(NDJSON paths for ``textFile``, JSON paths for ``wholeTextFiles``)."""
    lines: list[str] = []
    whole: list[str] = []
    for raw in paths:
        if _is_remote(raw):
            (whole if raw.endswith(".json") else lines).append(raw)
            continue
        for path, _ in input_files([raw]):
            target = lines if path.name.endswith((".ndjson", ".ndjson.gz")) else whole
            target.append(str(path.resolve()))
    return lines, whole


# -- worker side (module functions: Spark pickles them by reference) -----------------------------

_state: dict = {}


def _evaluator(hook: str, now: datetime, orders, replay: bool) -> Evaluator:
    key = (hook, now, json.dumps(orders), replay)
    if _state.get("key") != key:
        _state.update(key=key, evaluator=Evaluator(hook, now, orders=orders, replay=replay))
    return _state["evaluator"]


def _line_resources(line: str, wanted: frozenset[str], now: datetime) -> list[tuple[str | None, str, str | None]]:
    """``(patient, text, shared key)`` of a kept NDJSON line; a line that is not JSON is dropped."""
    if not line.strip():
        return []
    head = _HEAD.match(line)
    if head is not None and head.group(1) not in wanted:
        return []  # a type no rule reads: not parsed
    try:
        kept = _kept(json.loads(line), wanted, line.strip(), now)
    except ValueError:
        return []
    return _rows([kept] if kept else [])


def _file_resources(item: tuple[str, str], wanted: frozenset[str], now: datetime) -> list:
    """The kept resources of a whole JSON file (a Bundle or a resource); a file that is not JSON is dropped."""
    from ..fhir.bundles import bundle_resources

    try:
        kept = [_kept(r, wanted, None, now) for r in bundle_resources(json.loads(item[1]))]
    except ValueError:
        return []
    return _rows([k for k in kept if k is not None])


def _rows(kept: list[Resource]) -> list[tuple[str | None, str, str | None]]:
    return [(r.patient, r.text, None if r.patient is not None or r.rid is None else f"{r.rtype}/{r.rid}")
            for r in kept]


def _evaluate_patient(group, hook, now, orders, replay, shared_bc) -> list[dict]:
    pid, texts = group
    texts = list(texts)
    resources = [json.loads(t) for t in texts]
    if not any(r.get("resourceType") == "Patient" for r in resources):
        return []  # resources of a patient the data does not hold
    shared = shared_bc.value
    if shared:
        refs = {k for t in texts if _REFERENCE_FIELD in t
                for k in re.findall(r'"reference"\s*:\s*"([A-Za-z]+/[^"/]+)"', t)}
        resources += [json.loads(shared[k]) for k in sorted(refs) if k in shared]
    return _evaluator(hook, now, orders, replay).patient(pid, resources)


def _partial_counts(results: list[dict]) -> dict:
    """One patient's contribution to the counts (merged with ``_merge``)."""
    c: dict = {"patients": 1, "calls": len(results), "answered": 0, "skipped": {}, "errors": {}, "rule_cards": {},
               "rule_calls": {}, "rule_patients": {}, "rule_failed": {}, "indicators": {}, "cards_per_call": {},
               "cards_per_patient": {}, "carded_calls": 0, "ms": {}}
    carded_rules: set[str] = set()
    total = 0
    for r in results:
        if r["status"] == "skipped":
            c["skipped"][r["reason"]] = 1
            continue
        if r["status"] == "error":
            c["errors"][r["reason"]] = c["errors"].get(r["reason"], 0) + 1
            continue
        c["answered"] += 1
        bucket = _bucket(r["ms"])
        c["ms"][bucket] = c["ms"].get(bucket, 0) + 1
        n = len(r["cards"])
        total += n
        c["cards_per_call"][n] = c["cards_per_call"].get(n, 0) + 1
        c["carded_calls"] += 1 if n else 0
        for rule in set(r["failed"]):
            c["rule_failed"][rule] = c["rule_failed"].get(rule, 0) + 1
        rules_here = set()
        for card in r["cards"]:
            c["rule_cards"][card["rule"]] = c["rule_cards"].get(card["rule"], 0) + 1
            c["indicators"][card["indicator"]] = c["indicators"].get(card["indicator"], 0) + 1
            rules_here.add(card["rule"])
        for rule in rules_here:
            c["rule_calls"][rule] = c["rule_calls"].get(rule, 0) + 1
        carded_rules |= rules_here
    for rule in carded_rules:
        c["rule_patients"][rule] = 1
    c["cards_per_patient"][total] = 1
    return c


def _merge(a: dict, b: dict) -> dict:
    out = {}
    for key, value in a.items():
        if isinstance(value, dict):
            merged = dict(value)
            for k, v in b[key].items():
                merged[k] = merged.get(k, 0) + v
            out[key] = merged
        else:
            out[key] = value + b[key]
    return out


def _card_rows(results: list[dict]) -> list[str]:
    rows = []
    for r in results:
        for card in r["cards"]:
            row = {"patient": r["patient"], "at": r["at"]}
            if r.get("order"):
                row["order"] = r["order"]
            row.update(card)
            rows.append(json.dumps(row, ensure_ascii=False))
    return rows


# -- driver ------------------------------------------------------------------------------------

def _session(master: str | None):
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("cdshooks-simulate").config("spark.ui.showConsoleProgress", "false")
    if master is None and SparkConf().contains("spark.master"):  # under spark-submit: its settings stand
        return builder.getOrCreate()
    master = master or "local[*]"
    builder = builder.master(master)
    if master.startswith("local"):
        # local mode stays on loopback: no web UI, the driver bound to 127.0.0.1
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1") \
            .config("spark.driver.bindAddress", "127.0.0.1")
    return builder.getOrCreate()


def simulate_spark(paths: list[str], hook: str, now: datetime, orders: list[dict] | None, *,
                   out: str | None = None, master: str | None = None, replay: bool = False,
                   partitions: int = 0) -> tuple[dict, bool]:
    """Evaluate every patient of ``paths`` on Spark; the report and whether any call failed or rule raised."""
    problem = java_problem()
    if problem:
        raise InputError(problem)
    started = time.monotonic()
    lines_in, whole_in = _split_inputs(paths)
    if not lines_in and not whole_in:
        raise InputError("no Patient found in " + ", ".join(paths))
    probe = Evaluator(hook, now, orders=orders, replay=replay)
    wanted, rule_ids = probe.wanted, probe.rule_ids
    try:
        spark = _session(master)
    except Exception as exc:  # the JVM did not start, or the master is unreachable
        raise InputError(f"Spark did not start: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")
    try:
        parts = []
        if lines_in:
            parts.append(sc.textFile(",".join(lines_in)).flatMap(lambda line: _line_resources(line, wanted, now)))
        if whole_in:
            parts.append(sc.wholeTextFiles(",".join(whole_in)).flatMap(
                lambda item: _file_resources(item, wanted, now)))
        rows = parts[0] if len(parts) == 1 else sc.union(parts)
        rows = rows.cache()
        shared = dict(rows.filter(lambda r: r[2] is not None).map(lambda r: (r[2], r[1])).collect())
        shared_bc = sc.broadcast(shared)
        grouped = rows.filter(lambda r: r[0] is not None).map(lambda r: (r[0], r[1]))
        grouped = grouped.groupByKey(partitions or None)
        results = grouped.map(lambda g: _evaluate_patient(g, hook, now, orders, replay, shared_bc)) \
            .filter(bool).cache()
        loaded = time.monotonic() - started
        try:
            merged = results.map(_partial_counts).treeReduce(_merge)
        except ValueError:  # an empty population: nothing to reduce
            merged = None
        if not merged or not merged["patients"]:
            raise InputError("no Patient found in " + ", ".join(paths))
        if out is not None:
            results.flatMap(_card_rows).saveAsTextFile(_join(out, "cards"))
    except InputError:
        raise
    except Exception as exc:  # a job failed (a lost executor, an unreadable path, the output already there)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise InputError(f"the Spark job failed: {type(exc).__name__}: {first}") from None
    finally:
        spark.stop()
    quantiles = _quantiles(merged["ms"])
    counts = Counts(patients=merged["patients"], calls=merged["calls"], answered=merged["answered"],
                    skipped=merged["skipped"], errors=merged["errors"], rule_cards=merged["rule_cards"],
                    rule_calls=merged["rule_calls"], rule_patients=merged["rule_patients"],
                    rule_failed=merged["rule_failed"], indicators=merged["indicators"],
                    cards_per_call={int(k): v for k, v in merged["cards_per_call"].items()},
                    cards_per_patient={int(k): v for k, v in merged["cards_per_patient"].items()},
                    carded_calls=merged["carded_calls"], p50_ms=quantiles[0], p95_ms=quantiles[1])
    timing = {"totalSeconds": round(time.monotonic() - started, 3), "loadSeconds": round(loaded, 3),
              "engine": "spark", "master": master or "local[*]"}
    report = summarize(counts, hook, now, rule_ids, timing)
    if out is not None and not _is_remote(out):
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        (folder / "report.html").write_text(html_report(report), "utf-8")
    failed = bool(report["errors"]) or any(r["failed"] for r in report["rules"])
    return report, failed


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def _bucket(ms: float) -> float:
    """A call time rounded to 0.1 ms below 100 ms, 1 ms below 1 s, 10 ms above: the percentiles'
    histogram stays small whatever the population."""
    if ms < 100:
        return round(ms, 1)
    if ms < 1000:
        return float(round(ms))
    return float(round(ms, -1))


def _quantiles(histogram: dict) -> tuple[float | None, float | None]:
    """Nearest-rank p50 and p95 from the merged histogram of call times."""
    n = sum(histogram.values())
    if not n:
        return None, None
    ordered = sorted(histogram.items())

    def at(q: float) -> float:
        rank = max(1, -(-n * q // 100))
        seen = 0
        for value, count in ordered:
            seen += count
            if seen >= rank:
                return value
        return ordered[-1][0]

    return at(50), at(95)
