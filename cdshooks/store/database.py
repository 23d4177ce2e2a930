"""Store: the service's database (SQLAlchemy; SQLite by default, PostgreSQL with the ``postgres`` extra).

Tables are described in ``schema.py`` and built by the migrations (``migrate.py``).
Issued-card records are written behind the response (``writer.py``); feedback, the report
and the JWT replay cache go to the database directly. A database that cannot be reached
raises ``StoreUnavailable`` (the service answers 503), except for issued-card records,
which degrade: they are retried, then dropped and counted.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import and_, case, delete, event, func, insert, literal, select, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine, create_engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .. import logs, metrics
from . import migrate
from .schema import feedback, issued_card, seen_token
from .writer import IssuedWriter

__all__ = ["Store", "IssuedCard", "StoreUnavailable"]

UNKNOWN_CARD = "(unknown card)"
_FEEDBACK_WAIT = 0.5  # seconds a feedback lookup waits for a card another worker may still be writing


_ROWS_PER_INSERT = 100  # 7 columns: 700 parameters, under SQLite's oldest limit of 999
_ISSUED_COLUMNS = ("uuid", "rule_id", "service_id", "hook_instance", "indicator", "suggestions", "issued_at")
_ISSUED_AT = issued_card.c.issued_at


def _insert_issued(conn, rows: list[dict]) -> None:
    """Insert issued-card rows in ``conn``'s transaction (see ``Store._write_issued``)."""
    dialect = conn.dialect
    process = _ISSUED_AT.type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
    mark = "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start:start + _ROWS_PER_INSERT]
        params = tuple(value for row in chunk for value in (
            row["uuid"], row["rule_id"], row["service_id"], row["hook_instance"], row["indicator"],
            row["suggestions"], process(row["issued_at"])))
        conn.exec_driver_sql(_insert_sql(mark, len(chunk)), params)


@functools.lru_cache(maxsize=2 * _ROWS_PER_INSERT)
def _insert_sql(mark: str, rows: int) -> str:
    """``INSERT INTO issued_card (...) VALUES (...), ...`` for ``rows`` rows, with the driver's placeholder."""
    one = "(" + ", ".join([mark] * len(_ISSUED_COLUMNS)) + ")"
    return f"INSERT INTO issued_card ({', '.join(_ISSUED_COLUMNS)}) VALUES " + ", ".join([one] * rows)

class StoreUnavailable(Exception):
    """The database cannot be reached or refused the operation (not a client's fault)."""

    def __init__(self, operation: str):
        super().__init__(f"the database is unavailable ({operation})")
        self.operation = operation


class IssuedCard(tuple):
    """(uuid, rule_id, indicator, suggestion uuids) of one answered card."""

    __slots__ = ()

    def __new__(cls, uuid: str, rule_id: str, indicator: str, suggestions: list[str]):
        return super().__new__(cls, (uuid, rule_id, indicator, suggestions))


def _retry(action, attempts: int = 20, pause: float = 0.1):
    """Run ``action``; on a lock or a lost race between booting workers, wait and try again."""
    for attempt in range(attempts):
        try:
            return action()
        except (sqlite3.OperationalError, OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(pause)
    return None


def _in_memory(url: str) -> bool:
    return url.startswith("sqlite") and (url.partition("://")[2] in {"", "/", "/:memory:"})


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Store:
    """The database of one service process.

    ``issued_retention_days``: issued-card records older than this are deleted (0 keeps them);
    ``replay_purge_seconds``: how often expired replay-cache entries are deleted;
    ``queue_size``: issued-card rows that may wait to be written (0 writes them in the request);
    ``connect_timeout``: seconds to wait for a PostgreSQL connection.
    """

    def __init__(self, url: str, *, issued_retention_days: int = 365, replay_purge_seconds: int = 60,
                 queue_size: int = 10_000, connect_timeout: float = 3.0, migrate_on_init: bool = True):
        self.url = url
        self.issued_retention_days = issued_retention_days
        self.replay_purge_seconds = max(1, replay_purge_seconds)
        self.connect_timeout = connect_timeout
        self.migrate_on_init = migrate_on_init
        self._engine: Engine | None = None
        self._engine_pid: int | None = None
        self._lock = threading.Lock()
        if _in_memory(url):
            queue_size = 0  # one connection shared by every thread: no writer thread
        self._writer = IssuedWriter(self._write_issued, capacity=queue_size,
                                    maintenance=self.purge, maintenance_every=self.replay_purge_seconds) \
            if queue_size > 0 else None

    # -- connection -----------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        pid = os.getpid()
        if self._engine is None or self._engine_pid != pid:
            with self._lock:
                if self._engine is not None and self._engine_pid != pid:
                    self._engine.dispose(close=False)  # a forked worker: never reuse the parent's sockets
                    self._engine = None
                if self._engine is None:
                    self._engine = self._create_engine()
                    self._engine_pid = pid
        return self._engine

    def _create_engine(self) -> Engine:
        if _in_memory(self.url):
            return create_engine(self.url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, connect_args={"timeout": 10, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=10000")
                _retry(lambda: cur.execute("PRAGMA journal_mode=WAL"))  # needs a moment alone
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        connect_args: dict = {}
        if self.url.startswith(("postgresql", "postgres")):
            connect_args["connect_timeout"] = max(1, int(self.connect_timeout))
        return create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                             pool_timeout=self.connect_timeout, connect_args=connect_args)

    def init(self) -> None:
        """Connect; with ``migrate_on_init`` upgrade the schema to head, else check it is at head."""
        if self.migrate_on_init:
            _retry(lambda: migrate.upgrade(self.engine), attempts=5)
            return
        have, want = migrate.current(self.engine), migrate.head()
        if have != want:
            raise RuntimeError(f"the database schema is at revision {have or 'none'}, this service needs {want}: "
                               "run `cdshooks db upgrade` (or set CDSHOOKS_DB_MIGRATE=1)")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def start(self) -> None:
        """Ready this process to record issued cards before its first call (a gunicorn worker does):
        one row written and rolled back (the statement compiled, a connection opened), then the
        writer thread started, rather than both on the first card issued. Never raises."""
        row = {"uuid": "00000000-0000-4000-8000-000000000000", "rule_id": "", "service_id": "", "hook_instance": "",
               "indicator": "info", "suggestions": "[]", "issued_at": _utcnow()}
        try:
            with self.engine.connect() as conn:
                with conn.begin() as transaction:
                    _insert_issued(conn, [row])
                    transaction.rollback()
        except SQLAlchemyError:
            pass  # the first real write will say what is wrong
        if self._writer is not None:
            self._writer.start()

    def close(self) -> None:
        """Write every queued issued-card record (a clean shutdown), then release connections."""
        if self._writer is not None:
            self._writer.close()
        if self._engine is not None and self._engine_pid == os.getpid():
            self._engine.dispose()
        self._engine = None

    dispose = close

    def _unavailable(self, operation: str, exc: Exception) -> StoreUnavailable:
        metrics.STORE_ERRORS.labels(operation).inc()
        logs.event("store.unavailable", logging.ERROR, operation=operation, error=type(exc).__name__)
        return StoreUnavailable(operation)

    # -- issued cards ---------------------------------------------------------------
    def record_issued(self, service_id: str, hook_instance: str, cards: list[IssuedCard]) -> None:
        """Record a call's cards; queued and written behind the response. Never raises."""
        if not cards:
            return
        now = _utcnow()
        rows = [{"uuid": c[0], "rule_id": c[1], "service_id": service_id, "hook_instance": hook_instance,
                 "indicator": c[2], "suggestions": json.dumps(c[3]), "issued_at": now} for c in cards]
        if self._writer is not None:
            self._writer.put(rows)
            return
        try:
            self._write_issued(rows)
            metrics.ISSUED_RECORDS.labels("written").inc(len(rows))
        except SQLAlchemyError as exc:
            metrics.ISSUED_RECORDS.labels("dropped").inc(len(rows))
            self._unavailable("record_issued", exc)

    def _write_issued(self, rows: list[dict]) -> None:
        """Write a batch of issued-card rows: one multi-row INSERT per chunk, its SQL built once per
        chunk size and its values bound as the column types bind them.

        Not an executemany: the SQLite driver lets go of the interpreter and takes it back for every
        row, and beside busy request threads each taking-back waits up to a switch interval (5 ms),
        so a batch dragged on for hundreds of milliseconds while every release by a request thread
        (a system call, a socket write) let this thread cut in. Nor a statement built by SQLAlchemy
        per batch, whose hundreds of bound parameters cost more than the insert."""
        with self.engine.begin() as conn:
            _insert_issued(conn, rows)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until this process's queued issued-card records are written."""
        return self._writer.flush(timeout) if self._writer is not None else True

    def issued(self, card_uuid: str) -> dict | None:
        self.flush()
        with self.engine.connect() as conn:
            row = conn.execute(select(issued_card).where(issued_card.c.uuid == card_uuid)).mappings().first()
        return dict(row) if row else None

    # -- feedback -------------------------------------------------------------------
    def _known_cards(self, uuids: set[str]) -> dict:
        with self.engine.connect() as conn:
            return {r.uuid: r for r in conn.execute(
                select(issued_card.c.uuid, issued_card.c.rule_id, issued_card.c.service_id,
                       issued_card.c.hook_instance).where(issued_card.c.uuid.in_(uuids)))}

    def store_feedback(self, service_id: str, items: list[dict],
                       on_stored: Callable[[str | None, dict], None] | None = None) -> dict[str, int]:
        """Store feedback items; returns counts of stored, duplicate and unknown-card items.

        A card issued moments ago may still be queued, in this process or another: a lookup
        that misses flushes this process's queue and looks again for up to half a second.
        ``on_stored(rule_id, item)`` is called for each item stored (not for duplicates).
        Raises ``StoreUnavailable``.
        """
        counts = {"stored": 0, "duplicates": 0, "unknownCards": 0}
        uuids = {i["card"] for i in items}
        try:
            known = self._known_cards(uuids)
            if len(known) < len(uuids) and self._writer is not None:
                known = self._wait_for_cards(uuids, known)
            now = _utcnow()
            for item in items:
                card = known.get(item["card"])
                if card is None:
                    counts["unknownCards"] += 1
                reason = (item.get("overrideReason") or {}).get("reason") or {}
                row = {
                    "card_uuid": item["card"],
                    "rule_id": card.rule_id if card else None,
                    "service_id": card.service_id if card else service_id,
                    "hook_instance": card.hook_instance if card else None,
                    "outcome": item["outcome"],
                    "accepted_suggestions": json.dumps([s["id"] for s in item.get("acceptedSuggestions") or []]),
                    "override_system": reason.get("system"),
                    "override_code": reason.get("code"),
                    "override_comment": (item.get("overrideReason") or {}).get("userComment"),
                    "outcome_timestamp": item["outcomeTimestamp"],
                    "received_at": now,
                }
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(feedback), [row])
                except IntegrityError:
                    counts["duplicates"] += 1
                    continue
                counts["stored"] += 1
                if on_stored is not None:
                    on_stored(row["rule_id"], item)
        except SQLAlchemyError as exc:
            raise self._unavailable("store_feedback", exc) from None
        return counts

    def _wait_for_cards(self, uuids: set[str], known: dict) -> dict:
        """Cards missing from the table may still be queued, here or in another worker process:
        flush this process's queue, then look again until another writer's batch had time to land."""
        if self._writer is not None and self._writer.pending():
            self.flush()
        deadline = time.monotonic() + _FEEDBACK_WAIT
        while True:
            known = self._known_cards(uuids)
            if len(known) == len(uuids) or time.monotonic() >= deadline:
                return known
            time.sleep(0.05)

    def feedback_rows(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(feedback).order_by(feedback.c.id)).mappings()]

    def report(self) -> list[dict]:
        """Per rule: cards issued, accepted, overridden, and the most frequent override reasons.

        Aggregated in SQL; feedback stored before its card's record was written is attributed
        through the card when the report runs.
        """
        self.flush()
        rule = func.coalesce(feedback.c.rule_id, issued_card.c.rule_id, literal(UNKNOWN_CARD))
        joined = feedback.outerjoin(issued_card, issued_card.c.uuid == feedback.c.card_uuid)
        try:
            with self.engine.connect() as conn:
                issued = {r: n for r, n in conn.execute(
                    select(issued_card.c.rule_id, func.count()).group_by(issued_card.c.rule_id))}
                outcomes = conn.execute(
                    select(rule.label("rule"),
                           func.count(func.distinct(case((feedback.c.outcome == "accepted", feedback.c.card_uuid)))),
                           func.count(func.distinct(case((feedback.c.outcome == "overridden", feedback.c.card_uuid)))))
                    .select_from(joined).group_by(rule)).all()
                reasons = conn.execute(
                    select(rule.label("rule"), feedback.c.override_code, func.count().label("n"))
                    .select_from(joined)
                    .where(and_(feedback.c.outcome == "overridden", feedback.c.override_code.is_not(None)))
                    .group_by(rule, feedback.c.override_code)).all()
        except SQLAlchemyError as exc:
            raise self._unavailable("report", exc) from None
        counted = {r: (a, o) for r, a, o in outcomes}
        top: dict[str, list[tuple[str, int]]] = {}
        for r, code, n in sorted(reasons, key=lambda x: (-x[2], x[1])):
            top.setdefault(r, [])
            if len(top[r]) < 3:
                top[r].append((code, n))
        report = []
        for rule_id in sorted(set(issued) | set(counted)):
            accepted, overridden = counted.get(rule_id, (0, 0))
            report.append({"rule": rule_id, "issued": issued.get(rule_id, 0), "accepted": accepted,
                           "overridden": overridden, "topOverrideReasons": top.get(rule_id, [])})
        return report

    # -- retention ------------------------------------------------------------------
    def purge(self, now: datetime | None = None) -> dict[str, int]:
        """Delete expired replay-cache entries and issued-card records past their retention."""
        now = now or _utcnow()
        with self.engine.begin() as conn:
            tokens = conn.execute(delete(seen_token).where(seen_token.c.expires_at < now)).rowcount
            cards = 0
            if self.issued_retention_days > 0:
                cutoff = now - timedelta(days=self.issued_retention_days)
                cards = conn.execute(delete(issued_card).where(issued_card.c.issued_at < cutoff)).rowcount
        if tokens or cards:
            logs.event("store.purged", replay_entries=tokens, issued_cards=cards)
        return {"replay_entries": tokens, "issued_cards": cards}

    # -- JWT replay cache -----------------------------------------------------------
    def claim_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a token id; False when it was seen before and has not expired (a replay).

        One statement, atomic under concurrent workers: insert, or take over an expired entry.
        Raises ``StoreUnavailable`` when the check cannot run.
        """
        if self._writer is not None:
            self._writer.start()  # its thread purges expired entries
        now = _utcnow()
        dialect = sqlite_dialect if self.engine.dialect.name == "sqlite" else pg_dialect
        values = {"issuer": issuer, "jti": jti, "expires_at": _aware(expires_at)}
        stmt = dialect.insert(seen_token).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[seen_token.c.issuer, seen_token.c.jti],
            set_={"expires_at": stmt.excluded.expires_at},
            where=seen_token.c.expires_at < now,
        ).returning(seen_token.c.jti)
        try:
            with self.engine.begin() as conn:
                return conn.execute(stmt).first() is not None
        except SQLAlchemyError as exc:
            raise self._unavailable("claim_jti", exc) from None
