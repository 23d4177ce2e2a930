"""Silent mode: every patient of FHIR files (Bundles, Bulk NDJSON, ``.ndjson.gz``) evaluated as the service
would, counted per rule, and written out for review.

``simulate()`` runs the local runner (``runner``) and, given an output folder, writes:

* ``cards.ndjson``: one line per card: ``patient``, ``at``, (``order`` when replayed), ``rule``,
  ``indicator``, ``summary``, ``suggestedOrders``; or ``cards.parquet`` with the same columns
  (``fmt="parquet"``, ``cardtable``);
* ``summary.json``: the report (per rule: rate, 95% interval, alerts per 1,000 chart opens);
* ``report.html``: the same with plots, readable offline.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Callable, TextIO

from ..service.hook_request import InputError
from .htmlreport import html_report
from .runner import RunOptions, run_local

__all__ = ["simulate", "write_outputs"]


def write_outputs(out: Path, report: dict, card_rows, fmt: str = "ndjson") -> None:
    """``cards.ndjson`` (or ``cards.parquet``), ``summary.json`` and ``report.html`` in ``out`` (created when
    missing)."""
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        from .cardtable import write_parquet

        write_parquet(out / "cards.parquet", card_rows)
    else:
        with open(out / "cards.ndjson", "w", encoding="utf-8") as f:
            for row in card_rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    (out / "report.html").write_text(html_report(report), "utf-8")


def simulate(paths: list[str], hook: str, now: datetime, orders: list[dict] | None,
             warn: Callable[[str], None], *, jobs: int = 1, out: str | None = None, work: str | None = None,
             replay: bool = False, keep_work: bool = False, chunk: int = 0, read_chunk: int = 0,
             fmt: str = "ndjson", stream: TextIO | None = None) -> tuple[dict, bool]:
    """Evaluate every patient of ``paths``; the report and whether any call failed or any rule raised.

    ``work`` is the checkpoint folder (default: ``<out>/work`` with ``out``, else a temporary
    one); it is removed after a finished run unless ``keep_work``. Raises ``InputError`` for
    unreadable input or input with no Patient.
    """
    if fmt == "parquet":
        from .cardtable import parquet_problem

        problem = parquet_problem()
        if problem:
            raise InputError(problem)
    if work is None and out is not None:
        work = str(Path(out) / "work")
    options = RunOptions(paths=paths, hook=hook, now=now, orders=orders, replay=replay, jobs=max(1, jobs),
                         work_dir=work, keep_work=keep_work, chunk=chunk, read_chunk=read_chunk)
    report, store, _, cleanup = run_local(options, warn, stream)
    try:
        if out is not None:
            write_outputs(Path(out), report, store.card_rows(), fmt)
    finally:
        store.close()
        cleanup()
    failed = bool(report["errors"]) or any(r["failed"] for r in report["rules"])
    return report, failed
