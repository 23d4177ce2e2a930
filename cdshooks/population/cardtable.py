"""The columns of the per-card output, for Parquet: one row per card, the same fields as ``cards.ndjson``.

``patient``, ``at``, ``order`` (replay: the replayed order, else null), ``rule``, ``indicator``,
``summary`` and ``suggestedOrders`` (a list of ``label``, ``action``, ``resourceType``, ``codings``
[``system``, ``code``, ``display``], ``text``, ``resourceId``). The local runner writes it with
pyarrow (``pip install 'cdshooks[parquet]'``), the Spark runner with Spark's own writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

__all__ = ["SPARK_SCHEMA", "write_parquet", "parquet_problem"]

SPARK_SCHEMA = ("patient STRING, at STRING, `order` STRING, rule STRING, indicator STRING, summary STRING, "
                "suggestedOrders ARRAY<STRUCT<label: STRING, action: STRING, resourceType: STRING, "
                "codings: ARRAY<STRUCT<system: STRING, code: STRING, display: STRING>>, text: STRING, "
                "resourceId: STRING>>")

_BATCH = 10_000


def parquet_problem() -> str | None:
    """Why Parquet cannot be written here (no pyarrow), or None."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "--format parquet needs pyarrow (pip install 'cdshooks[parquet]')"
    return None


def _schema():
    import pyarrow as pa

    coding = pa.struct([("system", pa.string()), ("code", pa.string()), ("display", pa.string())])
    order = pa.struct([("label", pa.string()), ("action", pa.string()), ("resourceType", pa.string()),
                       ("codings", pa.list_(coding)), ("text", pa.string()), ("resourceId", pa.string())])
    return pa.schema([("patient", pa.string()), ("at", pa.string()), ("order", pa.string()),
                      ("rule", pa.string()), ("indicator", pa.string()), ("summary", pa.string()),
                      ("suggestedOrders", pa.list_(order))])


def write_parquet(path: Path, rows: Iterable[dict]) -> int:
    """The card rows into one Parquet file, ``_BATCH`` rows at a time (memory stays flat); the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch.clear()
        if batch or not n:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
