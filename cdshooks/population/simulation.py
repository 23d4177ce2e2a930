"""Silent mode: every patient of FHIR files (Bundles, Bulk NDJSON) evaluated, cards counted per rule."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, TextIO

from ..fhir.bundles import fhir_files, patients, resolve_dates
from ..service.hook_request import InputError, NoDraftOrders, check_fhir, hook_request, read_fhir
from .inprocess import Answer, Service
from .report import rule_of

__all__ = ["load_stream", "Progress", "Tally", "simulate"]

_PROGRESS_WIDTH = 30


def load_stream(path: Path, now: datetime, warn: Callable[[str], None]) -> dict[str, list[dict]]:
    """One PATH argument's patients; a folder's files are read as one stream, so a patient's resources
    spread over several files (Bulk Data NDJSON: one file per type) come together."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    items: list[object] = []
    for source in fhir_files(path):
        try:
            data = read_fhir(source)
            check_fhir(data, str(source))
        except InputError as exc:
            if source == path:
                raise
            warn(f"skipped {exc}")
            continue
        items.append(data)
    try:
        return patients(resolve_dates(items, now))
    except ValueError as exc:  # a malformed relative date
        raise InputError(f"{path}: {exc}") from None


class Progress:
    """Progress on stderr: a bar redrawn at most ten times a second on a terminal, otherwise a line
    every tenth of the run (so logs of a CI job stay short)."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total, self.stream, self.started = total, stream or sys.stderr, time.monotonic()
        self.tty = self.stream.isatty()
        self._step = max(1, total // 10)
        self._drawn = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        if self.tty:
            if now - self._drawn < 0.1 and done != self.total:
                return
            self._drawn = now
            filled = _PROGRESS_WIDTH * done // max(1, self.total)
            bar = "#" * filled + "." * (_PROGRESS_WIDTH - filled)
            self.stream.write(f"\rsimulate [{bar}] {done}/{self.total} patients  {elapsed:5.1f} s")
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif done % self._step == 0 or done == self.total:
            print(f"simulate: {done}/{self.total} patients ({100 * done // max(1, self.total)}%), "
                  f"{elapsed:.1f} s", file=self.stream, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Tally:
    """Silent-mode counts over a run: per rule, patients evaluated, cards, patients with a card, failures."""

    rules: list[str]
    patients: int = 0
    answered: int = 0
    cards: Counter = field(default_factory=Counter)
    carded: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)

    def add(self, answer: Answer, seconds: float) -> None:
        """Count one patient's answer; ``seconds`` is the time from data to answer (request building included)."""
        self.patients += 1
        self.seconds.append(seconds)
        self.failed.update(set(answer.failed_rules))
        if answer.status != 200:
            self.problems[answer.problem()] += 1
            return
        self.answered += 1
        per_rule = Counter(rule_of(c) for c in answer.cards)
        self.cards.update(per_rule)
        self.carded.update(per_rule.keys())

    def rows(self) -> list[dict]:
        out = []
        for rid in sorted(set(self.rules) | set(self.cards)):
            evaluated = self.answered - self.failed[rid]
            out.append({"rule": rid, "evaluated": evaluated, "cards": self.cards[rid],
                        "patients": self.carded[rid], "failed": self.failed[rid],
                        "rate": round(self.carded[rid] / evaluated, 4) if evaluated else 0.0})
        return out


def simulate(paths: list[str], hook: str, now: datetime, orders: list[dict] | None,
             warn: Callable[[str], None]) -> tuple[dict, bool]:
    """Evaluate every patient of ``paths``; the report and whether any call failed or any rule raised.

    Raises ``InputError`` for unreadable input or input with no Patient.
    """
    started = time.perf_counter()
    streams = [(p, load_stream(Path(p), now, warn)) for p in paths]
    total = sum(len(s) for _, s in streams)
    if not total:
        raise InputError("no Patient found in " + ", ".join(paths))
    loaded = time.perf_counter() - started
    with Service(now) as service:
        templates = service.templates(hook)
        tally = Tally(service.rule_ids(hook))
        progress = Progress(total)
        for path, split in streams:
            for pid in split:
                began = time.perf_counter()
                try:
                    request = hook_request(split[pid], hook, templates, now=now, patient_id=pid,
                                           orders=orders, what=f"{path} Patient/{pid}")
                except NoDraftOrders:
                    tally.skipped["no draft orders"] += 1
                    tally.patients += 1
                except InputError as exc:
                    tally.skipped[str(exc)] += 1
                    tally.patients += 1
                else:
                    tally.add(service.call(request), time.perf_counter() - began)
                progress.update(tally.patients)
    elapsed = time.perf_counter() - started
    timing = {"totalSeconds": round(elapsed, 3), "loadSeconds": round(loaded, 3)}
    if tally.seconds:
        timing.update(p50Ms=round(percentile(tally.seconds, 50) * 1000, 1),
                      p95Ms=round(percentile(tally.seconds, 95) * 1000, 1))
    report = {"hook": hook, "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "patients": tally.patients,
              "answered": tally.answered, "rules": tally.rows(),
              "errors": [{"message": m, "patients": n} for m, n in tally.problems.items()],
              "skipped": [{"reason": m, "patients": n} for m, n in tally.skipped.items()], "timing": timing}
    return report, bool(tally.problems or sum(tally.failed.values()))
