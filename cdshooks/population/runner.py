"""The local population runner: read, group by patient, evaluate on every core, with a checkpoint.

1. **Reading** (``--jobs`` processes): the input is cut into tasks (``sources``); each process
   appends the resources it keeps to its own SQLite shard (``workstore``).
2. **Grouping**: the shards are indexed by patient; the patients (those with a Patient
   resource) become the run's units.
3. **Evaluating** (``--jobs`` processes): chunks of patients; each process reads a patient's
   resources from every shard and evaluates them (``evaluation.Evaluator``); the main process
   stores each chunk's results with its patients marked done (the checkpoint).

Memory does not grow with the population: no process holds more than one task's or one
chunk's data. Progress goes to stderr from the first second, phase by phase. Given a work
folder, a run that stops (Ctrl-C, a crash, a reboot) resumes when started again with the same
arguments: the read tasks (byte ranges, files) already in the shards are not read again, a task a
killed process left half written is rolled back and read again, and finished patients are not
evaluated again.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, TextIO

from ..service.hook_request import InputError
from .evaluation import Evaluator
from .sources import ReadTask, add_counts, input_files, new_counts, read_tasks, task_resources
from .summary import counts_from_store, summarize
from .workstore import RunStore, Shard, ShardReader, finished_tasks, index_shards

__all__ = ["RunOptions", "Progress", "run_local", "default_jobs"]

_FORMAT = 2  # bump when the work folder's layout changes: an older checkpoint is then started afresh


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class RunOptions:
    paths: list[str]
    hook: str
    now: datetime
    orders: list[dict] | None = None
    replay: bool = False
    jobs: int = 1
    work_dir: str | None = None   # checkpoint folder; None: a temporary one, removed at the end
    keep_work: bool = False
    chunk: int = 0                # patients per evaluation chunk; 0: chosen from the population and jobs
    read_chunk: int = 0           # bytes per NDJSON read task; 0: sources.CHUNK_BYTES


class Progress:
    """Progress on stderr. On a terminal one line redrawn at most ten times a second; otherwise a line
    at each phase's start and end, every tenth of the evaluation, and at least every 10 seconds."""

    def __init__(self, stream: TextIO | None = None, label: str = "simulate"):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.label = label
        self.started = time.monotonic()
        self._drawn = 0.0
        self._step_next = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        print(f"{self.label}: {text}", file=self.stream, flush=True)
        self._drawn = time.monotonic()

    def tick(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self._drawn >= 0.1:
                self.stream.write(f"\r\033[K{self.label}: {text}  {self.elapsed():5.1f} s")
                self.stream.flush()
                self._drawn = now
        elif force or now - self._drawn >= 10:
            self.say(f"{text}, {self.elapsed():.1f} s")

    def patients(self, done: int, total: int) -> None:
        """The evaluation's progress (``simulate: 40/400 patients (10%), 1.2 s`` when not on a terminal)."""
        pct = 100 * done // max(1, total)
        if self.tty:
            filled = 30 * done // max(1, total)
            self.tick(f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} patients", force=done == total)
            if done == total:
                self.stream.write("\n")
            return
        if done >= self._step_next or done == total:
            self._step_next = done + max(1, total // 10)
            self.say(f"{done}/{total} patients ({pct}%), {self.elapsed():.1f} s")
        else:
            self.tick(f"{done}/{total} patients ({pct}%)")


# -- worker processes (state set once per process) ---------------------------------------------

_reader: dict = {}
_evaluator: dict = {}


def _init_reader(work: str, wanted: frozenset[str], now: datetime) -> None:
    _reader.update(work=Path(work), wanted=wanted, now=now, shard=None)


def _task_key(task: ReadTask) -> str:
    return json.dumps([task.files, task.start, task.end])


def _read(task: ReadTask) -> tuple[int, int, list[tuple[str, str, bool]], dict[str, int]]:
    if _reader.get("shard") is None:
        _reader["shard"] = Shard(_reader["work"] / f"shard-{os.getpid()}.sqlite")
    problems: list[tuple[str, str, bool]] = []
    counts = new_counts()
    resources = task_resources(task, _reader["wanted"], _reader["now"], problems, counts)
    kept = _reader["shard"].add(resources, _task_key(task), counts, problems)
    return task.size, kept, problems, counts


def _close_reader() -> None:
    shard = _reader.pop("shard", None)
    if shard is not None:
        shard.close()


def _init_evaluator(shards: list[str], hook: str, now: datetime, orders: list[dict] | None, replay: bool) -> None:
    _evaluator.update(reader=ShardReader([Path(s) for s in shards]),
                      evaluator=Evaluator(hook, now, orders=orders, replay=replay))


def _evaluate(chunk: list[tuple[int, str]]) -> list[tuple[int, list[dict]]]:
    reader, evaluator = _evaluator["reader"], _evaluator["evaluator"]
    return [(seq, evaluator.patient(pid, reader.resources(pid))) for seq, pid in chunk]


# -- the run -------------------------------------------------------------------------------------

def _signature(options: RunOptions, files: list[tuple[Path, bool]]) -> str:
    parts = {"format": _FORMAT, "hook": options.hook, "now": options.now.isoformat(), "replay": options.replay,
             "readChunk": options.read_chunk, "orders": options.orders,
             "env": sorted((k, v) for k, v in os.environ.items() if k.startswith("CDSHOOKS_RULES_")),
             "files": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _pool(jobs: int, initializer: Callable, args: tuple):
    return multiprocessing.get_context("fork").Pool(jobs, initializer=initializer, initargs=args)


def _read_phase(options: RunOptions, work: Path, tasks: list[ReadTask], wanted: frozenset[str],
                progress: Progress, warn: Callable[[str], None]) -> dict[str, int]:
    """Read the tasks not finished yet into the shards; the reading counts of every task."""
    finished = finished_tasks(sorted(work.glob("shard-*.sqlite")))
    counts = new_counts()
    problems: list[tuple[str, str, bool]] = []
    pending = []
    for task in tasks:
        done = finished.get(_task_key(task))
        if done is None:
            pending.append(task)
        else:
            add_counts(counts, done[0])
            problems.extend(done[1])
    total = sum(t.size for t in pending)
    done_bytes = kept = 0
    if len(pending) < len(tasks):
        progress.say(f"resuming reading: {len(tasks) - len(pending)} of {len(tasks)} part(s) already read")
    progress.say(f"reading {len(pending)} part(s), {total / 1e6:.1f} MB, with {options.jobs} process(es)")

    def account(result: tuple[int, int, list, dict]) -> None:
        nonlocal done_bytes, kept
        done_bytes += result[0]
        kept += result[1]
        problems.extend(result[2])
        add_counts(counts, result[3])
        progress.tick(f"reading {done_bytes / 1e6:.1f}/{total / 1e6:.1f} MB, {kept:,} resources kept")

    if options.jobs == 1 or len(pending) <= 1:
        _init_reader(str(work), wanted, options.now)
        try:
            for task in pending:
                account(_read(task))
        finally:
            _close_reader()
    else:
        with _pool(options.jobs, _init_reader, (str(work), wanted, options.now)) as pool:
            results = pool.imap_unordered(_read, pending)
            left = len(pending)
            while left:
                try:
                    account(results.next(timeout=0.5))
                    left -= 1
                except multiprocessing.TimeoutError:
                    progress.tick(f"reading {done_bytes / 1e6:.1f}/{total / 1e6:.1f} MB, {kept:,} resources kept")
            pool.close()
            pool.join()
    progress.say(f"read {total / 1e6:.1f} MB, {kept:,} resources kept, {progress.elapsed():.1f} s")
    for path, message, given in problems:
        if given:
            raise InputError(message)
        warn(f"skipped {message}")
    return counts


def _chunk_size(options: RunOptions, pending: int) -> int:
    if options.chunk:
        return options.chunk
    return max(1, min(64, pending // (options.jobs * 8) or 1))


def run_local(options: RunOptions, warn: Callable[[str], None], stream: TextIO | None = None,
              rule_ids: list[str] | None = None) -> tuple[dict, RunStore, Path, Callable[[], None]]:
    """Run the population; returns the report, the run store (results), the work folder and a cleanup."""
    progress = Progress(stream)
    files = input_files(options.paths)
    if not files:
        raise InputError("no Patient found in " + ", ".join(options.paths))
    evaluator = Evaluator(options.hook, options.now, orders=options.orders, replay=options.replay)
    rule_ids = rule_ids or evaluator.rule_ids
    temporary = options.work_dir is None
    work = Path(options.work_dir or tempfile.mkdtemp(prefix="cdshooks-simulate-"))
    work.mkdir(parents=True, exist_ok=True)

    def cleanup() -> None:
        if temporary or not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    signature = _signature(options, files)
    store = RunStore(work / "run.sqlite")
    if store.get("signature") not in (None, signature):
        store.close()
        for p in work.glob("*.sqlite*"):
            p.unlink()
        progress.say("the work folder holds another run: starting afresh")
        store = RunStore(work / "run.sqlite")
    store.set("signature", signature)
    try:
        if store.get("phase") not in ("grouped", "evaluated"):
            store.db.execute("DELETE FROM units")
            store.db.commit()
            tasks = read_tasks(files, options.read_chunk) if options.read_chunk else read_tasks(files)
            reading = _read_phase(options, work, tasks, evaluator.wanted, progress, warn)
            store.set("reading", json.dumps(reading))
            shards = sorted(work.glob("shard-*.sqlite"))
            progress.say(f"grouping by patient ({len(shards)} shard(s))")
            index_shards(shards, options.jobs)
            patients = store.add_units(shards)
            store.set("phase", "grouped")
            progress.say(f"grouped {patients:,} patients, {progress.elapsed():.1f} s")
        else:
            shards = sorted(work.glob("shard-*.sqlite"))
        loaded = progress.elapsed()
        total = store.count_units()
        if not total:
            raise InputError("no Patient found in " + ", ".join(options.paths))
        done = store.count_units(done=True)
        if done:
            progress.say(f"resuming: {done:,} of {total:,} patients already evaluated")
        progress.patients(done, total)
        chunks = store.pending(_chunk_size(options, total - done))
        args = ([str(s) for s in shards], options.hook, options.now, options.orders, options.replay)
        if options.jobs == 1:
            _init_evaluator(*args)
            for chunk in chunks:
                results = _evaluate(chunk)
                store.store(results)
                done += len(results)
                progress.patients(done, total)
        else:
            with _pool(options.jobs, _init_evaluator, args) as pool:
                # the chunks are listed lazily, a bounded number ahead of the results
                window = options.jobs * 4
                queue = []
                for chunk in chunks:
                    queue.append(pool.apply_async(_evaluate, (chunk,)))
                    while len(queue) >= window:
                        done += _collect(queue, store, progress, total, done)
                while queue:
                    done += _collect(queue, store, progress, total, done)
                pool.close()
                pool.join()
        _evaluator.clear()
        store.set("phase", "evaluated")
        timing = {"totalSeconds": round(progress.elapsed(), 3), "loadSeconds": round(loaded, 3),
                  "jobs": options.jobs}
        reading = json.loads(store.get("reading") or "{}")
        report = summarize(counts_from_store(store.db), options.hook, options.now, rule_ids, timing, reading)
    except BaseException:
        store.close()
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
        raise
    return report, store, work, cleanup


def _collect(queue: list, store: RunStore, progress: Progress, total: int, done: int) -> int:
    head = queue[0]
    while True:
        try:
            results = head.get(timeout=0.5)
            break
        except multiprocessing.TimeoutError:
            progress.patients(done, total)
    queue.pop(0)
    store.store(results)
    progress.patients(done + len(results), total)
    return len(results)
