"""Writer: issued-card records written behind the response.

A hook call hands its rows to ``put`` and returns at once; one background thread per
process writes them in batches: once a row has arrived it waits ``_LINGER`` (0.1 s) for
more, whatever arrives meanwhile, then writes up to 1,000 rows in one transaction (sooner
when that many are queued, or when ``flush`` asks). One transaction per tenth of a second
rather than per call is what keeps the writer's share of a worker's CPU small. The queue is
bounded: when it is full (the database is down or too slow for too long) new rows are dropped and counted
(``cdshooks_issued_card_records_total{result="dropped"}``); a failed batch goes back to the
head of the queue and is retried with a growing pause.

``flush`` waits until every row queued so far is written (a feedback lookup that misses
calls it); ``close`` drains the queue and stops the thread: it runs at a clean shutdown
(gunicorn's ``worker_exit`` hook, and ``atexit``), so no acknowledged card record is lost
unless the database itself is unavailable then. A process killed with SIGKILL loses what was
still queued: at most the rows of the last few hundred milliseconds.

The same thread runs periodic ``maintenance`` (retention purges) so that no request pays for it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Callable

from .. import logs, metrics

__all__ = ["IssuedWriter", "close_all"]

_BATCH = 1000
_LINGER = 0.1        # seconds to let a batch fill once a row has arrived
_RETRY_MAX = 5.0     # longest pause between retries of a failed batch


class IssuedWriter:
    def __init__(self, write: Callable[[list[dict]], None], *, capacity: int,
                 maintenance: Callable[[], object] | None = None, maintenance_every: float = 60.0):
        self._write = write
        self._capacity = max(1, capacity)
        self._maintenance = maintenance
        self._maintenance_every = maintenance_every
        self._pid: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._rows: deque[dict] = deque()
        self._queued = 0        # rows ever queued in this process
        self._settled = 0       # rows written or dropped
        self._stopping = False
        self._hurry = 0         # flushes waiting: the batch being gathered goes at once
        self._thread: threading.Thread | None = None
        self._failing = False

    # -- the request side -----------------------------------------------------------
    def put(self, rows: list[dict]) -> bool:
        """Queue one call's rows; False (and counted) when the queue is full."""
        self.start()
        with self._cond:
            if self._stopping or len(self._rows) + len(rows) > self._capacity:
                metrics.ISSUED_RECORDS.labels("dropped").inc(len(rows))
                logs.event("store.issued_dropped", logging.WARNING, rows=len(rows), reason="queue full")
                return False
            was_empty = not self._rows
            self._rows.extend(rows)
            self._queued += len(rows)
            if was_empty or len(self._rows) >= _BATCH:  # else the writer is gathering a batch already
                self._cond.notify_all()
        metrics.ISSUED_QUEUE.inc(len(rows))
        return True

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every row queued so far is written or dropped; False on timeout."""
        if self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._hurry += 1
            try:
                while self._settled < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        return self._settled >= target
                    self._cond.notify_all()
                    self._cond.wait(min(left, 0.05))
            finally:
                self._hurry -= 1
        return True

    def pending(self) -> int:
        with self._cond:
            return self._queued - self._settled

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        """Start this process's writer thread (again after a fork: threads do not survive one)."""
        pid = os.getpid()
        if self._pid == pid and self._thread is not None:
            return
        with _START_LOCK:
            if self._pid == pid and self._thread is not None:
                return
            if self._pid != pid:
                self._reset()
                self._pid = pid
                atexit.register(self.close)
                _STARTED.add(self)
            self._thread = threading.Thread(target=self._run, name="cdshooks-issued-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread (a clean shutdown)."""
        if self._pid != os.getpid() or self._thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        left = self.pending()
        if left:
            logs.event("store.issued_lost", logging.ERROR, rows=left, reason="not written at shutdown")

    # -- the thread -----------------------------------------------------------------
    def _run(self) -> None:
        pause = 0.0
        next_maintenance = time.monotonic()
        while True:
            with self._cond:
                while not self._rows and not self._stopping:
                    wait = next_maintenance - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._rows:
                    # a put wakes this thread at once; the batch still gathers for _LINGER
                    until = time.monotonic() + _LINGER
                    while not self._stopping and not self._hurry and len(self._rows) < _BATCH:
                        left = until - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                batch = [self._rows.popleft() for _ in range(min(len(self._rows), _BATCH))]
                stopping = self._stopping
            if not batch:
                if stopping:
                    return
                next_maintenance = time.monotonic() + self._maintenance_every
                self._maintain()
                continue
            try:
                self._write(batch)
            except Exception as exc:  # the database is unavailable: keep the rows, retry later
                self._failed(exc)
                if stopping:
                    self._settle(batch, "dropped")
                    continue
                with self._cond:
                    self._rows.extendleft(reversed(batch))
                    pause = min(_RETRY_MAX, max(0.1, pause * 2))
                    self._cond.wait(pause)
                continue
            pause = 0.0
            if self._failing:
                self._failing = False
                logs.event("store.recovered", operation="record_issued")
            self._settle(batch, "written")

    def _settle(self, batch: list[dict], result: str) -> None:
        metrics.ISSUED_RECORDS.labels(result).inc(len(batch))
        metrics.ISSUED_QUEUE.dec(len(batch))
        if result == "dropped":
            logs.event("store.issued_lost", logging.ERROR, rows=len(batch), reason="database unavailable")
        with self._cond:
            self._settled += len(batch)
            self._cond.notify_all()

    def _failed(self, exc: Exception) -> None:
        metrics.STORE_ERRORS.labels("record_issued").inc()
        if not self._failing:
            self._failing = True
            logs.event("store.unavailable", logging.ERROR, operation="record_issued", error=type(exc).__name__)

    def _maintain(self) -> None:
        if self._maintenance is None:
            return
        try:
            self._maintenance()
        except Exception as exc:
            metrics.STORE_ERRORS.labels("maintenance").inc()
            logs.event("store.maintenance_failed", logging.WARNING, error=type(exc).__name__)


_START_LOCK = threading.Lock()
_STARTED: "weakref.WeakSet[IssuedWriter]" = weakref.WeakSet()


def close_all(timeout: float = 5.0) -> None:
    """Drain and stop every writer of this process (gunicorn's ``worker_exit`` hook calls it)."""
    for writer in list(_STARTED):
        writer.close(timeout)
