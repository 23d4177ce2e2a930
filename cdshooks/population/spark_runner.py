"""The Spark population runner: ``cdshooks simulate --engine spark [--master URL]``.

One pass over the input, one shuffle, one Spark job:

1. **reading**: Spark reads the NDJSON as text lines (local, HDFS or object-store paths, as Spark
   reads them; ``.gz`` decompressed by Spark; a large plain file split into several input
   partitions) and the JSON files (Bundles) whole. In the Python workers each line is classified as
   the local runner does (``sources.classify``): a line of a type no rule reads is skipped unparsed,
   the others parsed once and keyed by patient. Medications (which belong to no patient) are sent
   in the same pass to every shuffle partition under a key that sorts first there. What was read,
   kept, dropped and unreadable is counted in an accumulator.
2. **grouping**: ``repartitionAndSortWithinPartitions``: hash-partitioned by patient, sorted within
   each partition (spilling to disk as Spark's external sorter does), so a partition is a stream of
   its Medications, then each patient's resources one after the other;
3. **evaluating** (``mapPartitions``): each Python worker builds the ``evaluation.Evaluator`` once
   (cached at module level; Spark reuses the workers) and evaluates one patient at a time, as the
   local runner does, so both runners, and the service, give the same cards. The counts go to an
   accumulator; the card rows are the job's output.

It writes, when given ``--out DIR`` (a local folder, or any path Spark writes to):

* ``DIR/cards/``: Spark's part files of ``cards.ndjson`` rows (one per card), or a Parquet dataset
  with the same columns (``--format parquet``);
* ``DIR/summary.json`` and ``DIR/report.html``: written by the driver after the job, with Python for
  a local folder, through Hadoop's ``FileSystem`` (as Spark writes) for a path with a scheme
  (``hdfs://``, ``s3a://``, ``file://``).

Accumulators updated in a stage that Spark re-runs (a lost executor) can count that task twice: the
reading counts and the report are then approximate, the cards are not.

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
from typing import Any, cast
from urllib.parse import urlparse

from ..service.hook_request import InputError
from .evaluation import Evaluator
from .htmlreport import html_report
from .sources import Resource, classify, input_files, new_counts
from .summary import Counts, summarize

__all__ = ["simulate_spark", "java_problem"]

_REFERENCE = re.compile(r'"reference"\s*:\s*"([A-Za-z]+/[^"/]+)"')
_HEAD = re.compile(r'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"')
# Shuffle keys: a shared resource's copy for partition i sorts first in it, then the patients in order.
_SHARED_KEY = "\x00"
_PATIENT_KEY = "\x01"


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
    return len(scheme) > 1


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


class _DictSum:
    """Accumulator of nested count dicts (merged with ``_merge``); a class at module level, so the
    workers unpickle it by reference."""

    def zero(self, value: dict) -> dict:
        return {}

    def addInPlace(self, a: dict, b: dict) -> dict:  # noqa: N802 - Spark's AccumulatorParam interface
        if not a:
            return b
        if not b:
            return a
        return _merge(a, b)


# -- worker side (module functions: Spark pickles them by reference) -----------------------------

_state: dict = {}


def _evaluator(hook: str, now: datetime, orders, replay: bool, factory=None) -> Evaluator:
    """One evaluator per Python worker process (Spark reuses the workers between tasks)."""
    key = (hook, now, json.dumps(orders), replay, factory)
    if _state.get("key") != key:
        make = factory or Evaluator
        _state.update(key=key, evaluator=make(hook, now, orders=orders, replay=replay))
    return _state["evaluator"]


def _keyed(kept: Resource, why: str, partitions: int) -> list[tuple[str, str]]:
    if why == "shared":  # a Medication: one copy to every partition, where it sorts first
        ref = f"{kept.rtype}/{kept.rid}"
        return [(f"{_SHARED_KEY}{i:08d}|{ref}", kept.text) for i in range(partitions)]
    return [(_PATIENT_KEY + (kept.patient or ""), kept.text)]


def _read_lines(lines, wanted: frozenset[str], now: datetime, partitions: int, acc):
    """An input partition of NDJSON lines: the kept resources keyed for the shuffle; counts to ``acc``."""
    counts = new_counts()
    for line in lines:
        if not line.strip():
            continue
        counts["read"] += 1
        head = _HEAD.match(line)
        if head is not None and head.group(1) not in wanted:
            counts["dropped"] += 1  # a type no rule reads: not parsed
            continue
        try:
            kept, why = classify(json.loads(line), wanted, line.strip(), now)
        except ValueError:  # not JSON, or a malformed relative date
            counts["notJson"] += 1
            continue
        counts[why] += 1
        if kept is not None:
            yield from _keyed(kept, why, partitions)
    acc.add({"reading": counts})


def _read_files(items, wanted: frozenset[str], now: datetime, partitions: int, acc):
    """Whole JSON files (a Bundle or a resource each), as ``_read_lines``."""
    from ..fhir.bundles import bundle_resources

    counts = new_counts()
    for _, text in items:
        try:
            resources = bundle_resources(json.loads(text))
        except ValueError:
            counts["read"] += 1
            counts["notJson"] += 1
            continue
        if not resources:
            counts["read"] += 1
            counts["noResourceType"] += 1
        for res in resources:
            counts["read"] += 1
            try:
                kept, why = classify(res, wanted, None, now)
            except ValueError:
                counts["notJson"] += 1
                continue
            counts[why] += 1
            if kept is not None:
                yield from _keyed(kept, why, partitions)
    acc.add({"reading": counts})


def _partition_of(partitions: int):
    from pyspark.rdd import portable_hash

    def part(key: str) -> int:
        if key.startswith(_SHARED_KEY):
            return int(key[1:9])
        return portable_hash(key) % partitions

    return part


def _evaluate_partition(rows, hook, now, orders, replay, factory, out_cards: bool, acc):
    """A shuffled partition, sorted by key: its Medications first, then each patient's resources together.
    Yields the card rows (when written); the counts go to ``acc``."""
    from itertools import groupby

    shared: dict[str, str] = {}
    total: dict = {}
    evaluator = None
    for key, group in groupby(rows, key=lambda kv: kv[0]):
        if key.startswith(_SHARED_KEY):
            for _, text in group:
                shared[key.partition("|")[2]] = text
            continue
        texts = [text for _, text in group]
        resources = [json.loads(t) for t in texts]
        if not any(r.get("resourceType") == "Patient" for r in resources):
            continue  # resources of a patient the data does not hold
        if shared:
            refs = {k for t in texts for k in _REFERENCE.findall(t)}
            resources += [json.loads(shared[k]) for k in sorted(refs) if k in shared]
        evaluator = evaluator or _evaluator(hook, now, orders, replay, factory)
        results = evaluator.patient(key[1:], resources)
        part = _partial_counts(results)
        total = _merge(total, part) if total else part
        if out_cards:
            yield from _card_rows(results)
    if total:
        acc.add({"results": total})


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
    """Nested count dicts added key by key."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = out[key] + value
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
    builder = SparkSession.builder.appName("cdshooks-simulate").config("spark.ui.showConsoleProgress", "false") \
        .config("spark.python.worker.reuse", "true")
    if master is None and SparkConf().contains("spark.master"):  # under spark-submit: its settings stand
        return builder.getOrCreate()
    # the Python sort of a shuffled partition spills to disk past this much memory per worker, a limit that
    # counts the worker's evaluator (value sets, models); Spark's 512m default made it spill all the time
    builder = builder.config("spark.python.worker.memory", "2g")
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
                   partitions: int = 0, fmt: str = "ndjson", factory=None) -> tuple[dict, bool]:
    """Evaluate every patient of ``paths`` on Spark; the report and whether any call failed or rule raised.

    ``partitions``: of the shuffle by patient (default: twice the cluster's default parallelism);
    ``fmt``: ``ndjson`` or ``parquet`` for the cards; ``factory``: what builds the evaluator in the
    workers (default ``Evaluator``; it is pickled to them).
    """
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
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        spark = active or _session(master)
    except Exception as exc:  # the JVM did not start, or the master is unreachable
        raise InputError(f"Spark did not start: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")
    session_seconds = time.monotonic() - started
    written: list[str] = []
    report: dict = {}
    try:
        acc: Any = sc.accumulator({}, cast(Any, _DictSum()))  # _DictSum has AccumulatorParam's two methods
        n = partitions or max(2, 2 * sc.defaultParallelism)
        parts = []
        if lines_in:
            parts.append(sc.textFile(",".join(lines_in), minPartitions=n).mapPartitions(
                lambda it: _read_lines(it, wanted, now, n, acc)))
        if whole_in:
            parts.append(sc.wholeTextFiles(",".join(whole_in)).mapPartitions(
                lambda it: _read_files(it, wanted, now, n, acc)))
        rows = parts[0] if len(parts) == 1 else sc.union(parts)
        # one pass over the input: a shuffle by patient, each partition sorted (its Medications first)
        grouped = rows.repartitionAndSortWithinPartitions(n, _partition_of(n))
        write = out is not None
        cards = grouped.mapPartitions(
            lambda it: _evaluate_partition(it, hook, now, orders, replay, factory, write, acc))
        if out is None:
            cards.foreach(lambda _: None)
        elif fmt == "parquet":
            from .cardtable import SPARK_SCHEMA

            spark.read.schema(SPARK_SCHEMA).json(cards).write.parquet(_join(out, "cards"))
        else:
            cards.saveAsTextFile(_join(out, "cards"))
        merged = acc.value
        if not merged.get("results", {}).get("patients"):
            raise InputError("no Patient found in " + ", ".join(paths))
        report = _report(merged, hook, now, rule_ids, master,
                         {"totalSeconds": round(time.monotonic() - started, 3),
                          "startSeconds": round(session_seconds, 3)})
        if out is not None:
            written = _write_summary(spark, out, report)
    except InputError:
        raise
    except Exception as exc:  # a job failed (a lost executor, an unreadable path, the output already there)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise InputError(f"the Spark job failed: {type(exc).__name__}: {first}") from None
    finally:
        if active is None:  # a session the caller started stays theirs
            spark.stop()
    if written:
        report = {**report, "written": written}
    failed = bool(report["errors"]) or any(r["failed"] for r in report["rules"])
    return report, failed


def _report(merged: dict, hook: str, now: datetime, rule_ids: list[str], master: str | None, timing: dict) -> dict:
    res = merged["results"]
    quantiles = _quantiles(res.get("ms", {}))
    counts = Counts(patients=res["patients"], calls=res["calls"], answered=res["answered"],
                    skipped=res["skipped"], errors=res["errors"], rule_cards=res["rule_cards"],
                    rule_calls=res["rule_calls"], rule_patients=res["rule_patients"],
                    rule_failed=res["rule_failed"], indicators=res["indicators"],
                    cards_per_call={int(k): v for k, v in res["cards_per_call"].items()},
                    cards_per_patient={int(k): v for k, v in res["cards_per_patient"].items()},
                    carded_calls=res["carded_calls"], p50_ms=quantiles[0], p95_ms=quantiles[1])
    timing = {**timing, "engine": "spark", "master": master or "local[*]"}
    return summarize(counts, hook, now, rule_ids, timing, merged.get("reading", {}))


def _write_summary(spark, out: str, report: dict) -> list[str]:
    """``summary.json`` and ``report.html`` into ``out``: a local folder by Python, a path with a scheme
    (``hdfs://``, ``s3a://``, ``file://``) through Hadoop's FileSystem, as Spark writes there."""
    files = {"summary.json": json.dumps(report, indent=2) + "\n", "report.html": html_report(report)}
    if not _is_remote(out):
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, "utf-8")
        return [str(folder / name) for name in files]
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    written = []
    for name, text in files.items():
        path = jvm.org.apache.hadoop.fs.Path(_join(out, name))
        stream = path.getFileSystem(conf).create(path, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        written.append(_join(out, name))
    return written


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
