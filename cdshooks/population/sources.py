"""Input files of a population run, cut into read tasks, and the resources each task yields.

Inputs are FHIR Bundles (one or several patients each, Synthea transaction Bundles included),
single resources (``*.json``) and Bulk Data NDJSON (``*.ndjson``, ``*.ndjson.gz``), or folders of
them (searched recursively; ``index.json`` is not data). A plain NDJSON file is cut into byte
ranges so that several processes read one large file; a line belongs to the range it starts in.
A gzipped file or a JSON file is one task.

Only the resource types the hook can use are kept (``wanted``): an EHR's prefetch never sends the
others. An NDJSON line that starts with ``{"resourceType": "X"`` of another type is skipped
without being parsed; every other line is parsed. Relative dates (``$now-3d``) are resolved
against the run's instant.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from ..fhir.bundles import has_relative_dates, load_resources, patient_of, resolve_dates
from ..service.hook_request import InputError

__all__ = ["input_files", "read_tasks", "ReadTask", "Resource", "task_resources", "classify", "new_counts",
           "add_counts", "SHARED_TYPES", "READ_COUNTS"]

CHUNK_BYTES = 32 * 1024 * 1024
_SMALL_JSON_BATCH = 8 * 1024 * 1024
_HEAD = re.compile(rb'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"')
_MARKERS = ('"$now', '"$today')

# Types that belong to no patient: kept on their own and given to the patients whose resources reference them.
SHARED_TYPES = frozenset({"Medication"})

# What reading counts (``summary.json``'s ``reading``): NDJSON lines and the resources of JSON files read;
# kept (``shared`` of them: Medications, which belong to no patient); dropped (types no rule reads);
# unreadable: not JSON, no resourceType, or no patient reference (a resource of a patient's type that names
# no patient, or a Patient without id: it cannot be given to anyone).
READ_COUNTS = ("read", "kept", "shared", "dropped", "notJson", "noResourceType", "noPatient")


def _is_data(path: Path) -> bool:
    name = path.name
    return path.is_file() and name != "index.json" and (
        name.endswith(".json") or name.endswith(".ndjson") or name.endswith(".ndjson.gz"))


def input_files(paths: list[str]) -> list[tuple[Path, bool]]:
    """``(file, given)`` for every data file under ``paths``; ``given`` when the file was named itself.

    Raises ``InputError`` for a path that does not exist.
    """
    out: list[tuple[Path, bool]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            out += [(p, False) for p in sorted(p for p in path.rglob("*") if _is_data(p))]
        else:
            out.append((path, True))
    return out


@dataclass(frozen=True)
class ReadTask:
    """Part of the input: the byte range ``[start, end)`` of one NDJSON file (``end`` -1: the whole
    file), or several whole JSON files."""

    files: tuple[str, ...]
    given: tuple[bool, ...]
    start: int = 0
    end: int = -1
    size: int = 0


def read_tasks(files: list[tuple[Path, bool]], chunk_bytes: int = CHUNK_BYTES) -> list[ReadTask]:
    tasks: list[ReadTask] = []
    batch: list[tuple[Path, bool]] = []
    batch_size = 0
    for path, given in files:
        size = path.stat().st_size
        if path.name.endswith(".ndjson"):
            for start in range(0, max(size, 1), chunk_bytes):
                end = min(size, start + chunk_bytes)
                tasks.append(ReadTask((str(path),), (given,), start, end if end < size else -1, end - start))
        elif path.name.endswith(".ndjson.gz"):
            tasks.append(ReadTask((str(path),), (given,), size=size))
        else:
            batch.append((path, given))
            batch_size += size
            if batch_size >= _SMALL_JSON_BATCH:
                tasks.append(ReadTask(tuple(str(p) for p, _ in batch), tuple(g for _, g in batch), size=batch_size))
                batch, batch_size = [], 0
    if batch:
        tasks.append(ReadTask(tuple(str(p) for p, _ in batch), tuple(g for _, g in batch), size=batch_size))
    return tasks


@dataclass
class Resource:
    """One kept resource: its type, id, patient (None for shared ones such as Medication) and JSON text."""

    rtype: str
    rid: str | None
    patient: str | None
    text: str


def _lines(path: str, start: int, end: int) -> Iterator[bytes]:
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            yield from f
        return
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            f.readline()  # the rest of the line that started in the previous range
        while end < 0 or f.tell() < end:
            line = f.readline()
            if not line:
                return
            yield line


def new_counts() -> dict[str, int]:
    return dict.fromkeys(READ_COUNTS, 0)


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value
    return total


def classify(res: Any, wanted: frozenset[str], text: str | None, now: datetime) -> tuple[Resource | None, str]:
    """A parsed item: ``(Resource, "kept" | "shared")`` or ``(None, why)`` with why one of ``READ_COUNTS``.

    Raises ValueError for a malformed relative date.
    """
    if not isinstance(res, dict):
        return None, "noResourceType"
    rtype = res.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return None, "noResourceType"
    if rtype not in wanted:
        return None, "dropped"
    kept = _kept(res, wanted, text, now)
    assert kept is not None
    if kept.patient is not None:
        return kept, "kept"
    if rtype in SHARED_TYPES and kept.rid is not None:
        return kept, "shared"
    return None, "noPatient"


def _kept(res: Any, wanted: frozenset[str], text: str | None, now: datetime) -> Resource | None:
    if not isinstance(res, dict):
        return None
    rtype = res.get("resourceType")
    if not isinstance(rtype, str) or rtype not in wanted:
        return None
    if text is None:
        if has_relative_dates(res):
            res = resolve_dates(res, now)
        text = json.dumps(res, ensure_ascii=False, separators=(",", ":"))
    elif any(m in text for m in _MARKERS):
        res = resolve_dates(res, now)
        text = json.dumps(res, ensure_ascii=False, separators=(",", ":"))
    rid = res.get("id") if isinstance(res.get("id"), str) else None
    return Resource(rtype, rid, patient_of(res), text)


def task_resources(task: ReadTask, wanted: frozenset[str], now: datetime,
                   problems: list[tuple[str, str, bool]], counts: dict[str, int] | None = None) -> Iterator[Resource]:
    """The kept resources of a task; unreadable input is appended to ``problems`` as (file, message, given)
    and counted in ``counts`` (see ``READ_COUNTS``)."""
    counts = counts if counts is not None else new_counts()
    if len(task.files) == 1 and (task.files[0].endswith(".ndjson") or task.files[0].endswith(".ndjson.gz")):
        path, given = task.files[0], task.given[0]
        bad = 0
        try:
            for line in _lines(path, task.start, task.end):
                if not line.strip():
                    continue
                counts["read"] += 1
                head = _HEAD.match(line)
                if head is not None and head.group(1).decode() not in wanted:
                    counts["dropped"] += 1
                    continue
                try:
                    res = json.loads(line)
                    kept, why = classify(res, wanted, line.decode("utf-8", "replace").strip(), now)
                except ValueError:  # not JSON, or a malformed relative date
                    bad += 1
                    counts["notJson"] += 1
                    continue
                counts[why] += 1
                if kept is not None:
                    yield kept
        except (OSError, EOFError) as exc:
            problems.append((path, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", given))
        if bad:
            problems.append((path, f"{path}: {bad} line(s) are not JSON (or hold a malformed relative date) "
                                   "and were skipped", False))
        return
    for path, given in zip(task.files, task.given):
        try:
            items = load_resources(path)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append((path, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", given))
            continue
        except ValueError as exc:
            counts["read"] += 1
            counts["notJson"] += 1
            problems.append((path, f"{path} is not JSON ({exc})", given))
            continue
        if not items:
            counts["read"] += 1
            counts["noResourceType"] += 1
            problems.append((path, f"{path} is not FHIR: expected a Bundle or resources with a resourceType", given))
            continue
        for res in items:
            counts["read"] += 1
            try:
                kept, why = classify(res, wanted, None, now)
            except ValueError as exc:  # a malformed relative date
                counts["notJson"] += 1
                problems.append((path, f"{path}: {exc}", given))
                break
            counts[why] += 1
            if kept is not None:
                yield kept
