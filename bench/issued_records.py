"""Issued-card records on a hook call's path: written during the call (``CDSHOOKS_ISSUED_QUEUE_SIZE=0``)
against queued and written behind the response (the default), on SQLite and, when its binaries are
here, on a throwaway PostgreSQL cluster. Calls alternate A/B so the ratio survives noise.

    .venv/bin/python bench/issued_records.py [--calls 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cdshooks.store import IssuedCard, Store  # noqa: E402


def cards(n: int = 4) -> list[IssuedCard]:
    return [IssuedCard(str(uuid.uuid4()), f"rule-{i}", "warning", [str(uuid.uuid4())]) for i in range(n)]


def measure(url_sync: str, url_queued: str, calls: int) -> tuple[float, float]:
    sync, queued = Store(url_sync, queue_size=0), Store(url_queued)
    sync.init()
    queued.init()
    a: list[float] = []
    b: list[float] = []
    for _ in range(calls):
        for store, out in ((sync, a), (queued, b)):
            batch = cards()
            started = time.perf_counter()
            store.record_issued("fasciculation-patient-view", str(uuid.uuid4()), batch)
            out.append((time.perf_counter() - started) * 1000)
    queued.close()
    sync.close()
    return statistics.median(a), statistics.median(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("sqlite", *measure(f"sqlite:///{tmp}/a.sqlite", f"sqlite:///{tmp}/b.sqlite", args.calls)))
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        import postgres  # the tests' throwaway cluster

        cluster = postgres.start()
    except (ImportError, RuntimeError) as exc:
        print(f"postgresql: skipped ({exc})")
    else:
        try:
            rows.append(("postgresql", *measure(cluster.url(cluster.create_database()),
                                                cluster.url(cluster.create_database()), args.calls)))
        finally:
            cluster.remove()
    print(f"{'database':<12} {'in the call p50 ms':>19} {'queued p50 ms':>14} {'ratio':>7}")
    for name, sync_ms, queued_ms in rows:
        print(f"{name:<12} {sync_ms:>19.3f} {queued_ms:>14.3f} {sync_ms / queued_ms:>6.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
