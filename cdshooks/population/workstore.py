"""The work folder of a local population run: resources grouped by patient in SQLite, and the checkpoint.

Memory never holds the population: each reading process appends the resources it reads to its
own shard (``shard-<n>.sqlite``: ``res(pid, body)``, ``shared(key, body)`` for resources that
belong to no patient, such as Medications, and ``patients(pid)``); then every shard is indexed
by patient, and one patient's resources are read back from all shards by that index. Each read task
(a byte range of a file, or some whole files) is one transaction, with the task's key, counts and
problems in ``tasks``: an interrupted reading phase resumes with the tasks not recorded there, and a
task a killed process left half written is rolled back by SQLite's journal when the shard is next opened.

``run.sqlite`` is the checkpoint: ``meta`` (what the run is: inputs, hook, instant; its phase),
``units`` (the patients, each marked done once its results are stored), and the results:
``calls`` (one per hook call), ``cards`` and ``failures`` (rules that raised). A chunk's results
and its ``done`` marks are committed together, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from .sources import Resource

__all__ = ["Shard", "ShardReader", "RunStore", "index_shards", "finished_tasks"]

# A rollback journal (not fsynced): a process killed mid-write leaves a journal that SQLite plays back when
# the shard is next opened, so a partly written read task disappears and the shard stays readable.
_PRAGMAS = ("PRAGMA journal_mode=DELETE", "PRAGMA synchronous=OFF", "PRAGMA cache_size=-4000",
            "PRAGMA temp_store=FILE")
_REFERENCE = re.compile(r'"reference"\s*:\s*"([A-Za-z]+/[^"/]+)"')


class Shard:
    """One reading process's share of the input (append only)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path)
        for pragma in _PRAGMAS:
            self.db.execute(pragma)
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS res (pid TEXT NOT NULL, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS shared (key TEXT PRIMARY KEY, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS patients (pid TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS tasks (key TEXT PRIMARY KEY, counts TEXT NOT NULL, problems TEXT NOT NULL);
        """)

    def add(self, resources: Iterable[Resource], task: str | None = None, counts: dict | None = None,
            problems: list | None = None) -> int:
        """Append the resources; with ``task``, record it finished (its counts and problems) in the same
        transaction, so a read task is in a shard whole or not at all."""
        n = 0
        res_rows: list[tuple[str, str]] = []
        cur = self.db.cursor()
        for r in resources:
            n += 1
            if r.patient is not None:
                res_rows.append((r.patient, r.text))
                if r.rtype == "Patient":
                    cur.execute("INSERT OR IGNORE INTO patients VALUES (?)", (r.patient,))
                if len(res_rows) >= 2000:
                    cur.executemany("INSERT INTO res VALUES (?, ?)", res_rows)
                    res_rows.clear()
            elif r.rid is not None:
                cur.execute("INSERT OR IGNORE INTO shared VALUES (?, ?)", (f"{r.rtype}/{r.rid}", r.text))
        cur.executemany("INSERT INTO res VALUES (?, ?)", res_rows)
        if task is not None:
            cur.execute("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?)",
                        (task, json.dumps(counts or {}), json.dumps(problems or [])))
        self.db.commit()
        return n

    def close(self) -> None:
        self.db.close()


def finished_tasks(paths: list[Path]) -> dict[str, tuple[dict, list]]:
    """The read tasks recorded finished in the shards: key -> (counts, problems). Opening a shard a killed
    process left mid-write rolls its unfinished task back."""
    out: dict[str, tuple[dict, list]] = {}
    for path in paths:
        db = sqlite3.connect(path)
        try:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'tasks'").fetchone():
                for key, counts, problems in db.execute("SELECT key, counts, problems FROM tasks"):
                    out[key] = (json.loads(counts), [tuple(p) for p in json.loads(problems)])
        finally:
            db.close()
    return out


def _index(path: Path) -> None:
    db = sqlite3.connect(path)
    for pragma in _PRAGMAS:
        db.execute(pragma)
    db.execute("CREATE INDEX IF NOT EXISTS res_pid ON res(pid)")
    db.commit()
    db.close()


def index_shards(paths: list[Path], jobs: int) -> None:
    """Index every shard by patient, ``jobs`` at a time (SQLite works outside the GIL)."""
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        list(pool.map(_index, paths))


class ShardReader:
    """One patient's resources from every shard (read only), Medications and the like they reference added."""

    def __init__(self, paths: list[Path]):
        self.dbs = []
        self.has_shared = []
        for path in paths:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            db.execute("PRAGMA cache_size=-2000")
            self.dbs.append(db)
            self.has_shared.append(db.execute("SELECT 1 FROM shared LIMIT 1").fetchone() is not None)

    def resources(self, pid: str) -> list[dict]:
        bodies: list[str] = []
        for db in self.dbs:
            bodies += [row[0] for row in db.execute("SELECT body FROM res WHERE pid = ? ORDER BY rowid", (pid,))]
        out = [json.loads(b) for b in bodies]
        if any(self.has_shared):
            wanted = {key for b in bodies for key in _REFERENCE.findall(b)}
            found: set[str] = set()
            for db, has in zip(self.dbs, self.has_shared):
                if not has:
                    continue
                for key in sorted(wanted - found):
                    row = db.execute("SELECT body FROM shared WHERE key = ?", (key,)).fetchone()
                    if row is not None:
                        found.add(key)
                        out.append(json.loads(row[0]))
        return out

    def close(self) -> None:
        for db in self.dbs:
            db.close()


class RunStore:
    """``run.sqlite``: what the run is, its patients, and the results stored so far."""

    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA cache_size=-4000")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS units (seq INTEGER PRIMARY KEY, pid TEXT UNIQUE NOT NULL,
                                              done INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, unit INTEGER NOT NULL, pid TEXT NOT NULL,
                                              at TEXT, status TEXT NOT NULL, reason TEXT, draft TEXT,
                                              ncards INTEGER NOT NULL, ms REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS cards (id INTEGER PRIMARY KEY, call INTEGER NOT NULL, rule TEXT NOT NULL,
                                              indicator TEXT, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS failures (call INTEGER NOT NULL, rule TEXT NOT NULL);
        """)

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self.db.commit()

    def add_units(self, shards: list[Path]) -> int:
        for n, shard in enumerate(shards):
            self.db.execute(f"ATTACH DATABASE ? AS s{n}", (str(shard),))
            self.db.execute(f"INSERT OR IGNORE INTO units(pid) SELECT pid FROM s{n}.patients ORDER BY rowid")
            self.db.commit()
            self.db.execute(f"DETACH DATABASE s{n}")
        return self.count_units()

    def count_units(self, done: bool | None = None) -> int:
        where = "" if done is None else f" WHERE done = {int(done)}"
        return self.db.execute(f"SELECT count(*) FROM units{where}").fetchone()[0]

    def pending(self, size: int) -> Iterator[list[tuple[int, str]]]:
        """The patients not done yet, ``size`` at a time, in order."""
        last = 0
        while True:
            rows = self.db.execute("SELECT seq, pid FROM units WHERE done = 0 AND seq > ? ORDER BY seq LIMIT ?",
                                   (last, size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield rows

    def store(self, chunk: list[tuple[int, list[dict]]]) -> None:
        """One chunk's results, and its patients marked done, in one transaction."""
        cur = self.db.cursor()
        for unit, results in chunk:
            for r in results:
                cur.execute("INSERT INTO calls(unit, pid, at, status, reason, draft, ncards, ms) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (unit, r["patient"], r["at"], r["status"], r.get("reason"), r.get("order"),
                             len(r["cards"]), r["ms"]))
                call = cur.lastrowid
                cur.executemany("INSERT INTO failures VALUES (?, ?)", [(call, rule) for rule in r["failed"]])
                cur.executemany("INSERT INTO cards(call, rule, indicator, body) VALUES (?, ?, ?, ?)",
                                [(call, c["rule"], c["indicator"], json.dumps(c, ensure_ascii=False))
                                 for c in r["cards"]])
            cur.execute("UPDATE units SET done = 1 WHERE seq = ?", (unit,))
        self.db.commit()

    def card_rows(self) -> Iterator[dict]:
        """Every card with its call's patient, instant and replayed order, in the order stored."""
        query = ("SELECT calls.pid, calls.at, calls.draft, cards.body FROM cards JOIN calls ON calls.id = cards.call "
                 "ORDER BY cards.id")
        for pid, at, draft, body in self.db.execute(query):
            row = {"patient": pid, "at": at}
            if draft:
                row["order"] = draft
            row.update(json.loads(body))
            yield row

    def close(self) -> None:
        self.db.close()
