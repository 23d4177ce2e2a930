"""Store: the service's database (SQLAlchemy; SQLite by default, any SQLAlchemy URL works).

Three tables:

* ``issued_card``: every card the service answered with (uuid, rule, service, hookInstance),
  so that feedback is attributable to the rule that issued the card;
* ``feedback``: one row per feedback item, unique on (card, outcome, outcomeTimestamp), so a
  repeated POST does not duplicate it;
* ``seen_token``: the JWT ``jti`` replay cache, shared by every worker process, kept until
  the token expires.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

__all__ = ["Store", "IssuedCard"]

metadata = MetaData()

issued_card = Table(
    "issued_card", metadata,
    Column("uuid", String(64), primary_key=True),
    Column("rule_id", String(64), nullable=False, index=True),
    Column("service_id", String(64), nullable=False),
    Column("hook_instance", String(128), nullable=False),
    Column("indicator", String(16), nullable=False),
    Column("suggestions", Text, nullable=False),  # JSON list of suggestion uuids
    Column("issued_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("rule_id", String(64), index=True),  # null when the card is unknown to this service
    Column("service_id", String(64), nullable=False),
    Column("hook_instance", String(128)),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", Text),  # JSON list of suggestion uuids
    Column("override_system", String(256)),
    Column("override_code", String(128)),
    Column("override_comment", Text),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_item"),
)

seen_token = Table(
    "seen_token", metadata,
    Column("issuer", String(512), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


class IssuedCard(tuple):
    """(uuid, rule_id, indicator, suggestion uuids) of one answered card."""

    __slots__ = ()

    def __new__(cls, uuid: str, rule_id: str, indicator: str, suggestions: list[str]):
        return super().__new__(cls, (uuid, rule_id, indicator, suggestions))


def _retry(action, attempts: int = 20, pause: float = 0.1):
    """Run ``action``; on a lock or a lost schema-creation race, wait and try again."""
    for attempt in range(attempts):
        try:
            return action()
        except (sqlite3.OperationalError, OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(pause)
    return None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Store:
    def __init__(self, url: str):
        self.url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._purged_at = 0.0

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
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
        else:
            engine = create_engine(self.url, pool_pre_ping=True)
        # Several worker processes start at once: one creates the tables, the others see them.
        _retry(lambda: metadata.create_all(engine))
        return engine

    def init(self) -> None:
        self.engine  # noqa: B018 - creates the schema

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- issued cards ---------------------------------------------------------------
    def record_issued(self, service_id: str, hook_instance: str, cards: list[IssuedCard]) -> None:
        if not cards:
            return
        now = _utcnow()
        rows = [{"uuid": c[0], "rule_id": c[1], "service_id": service_id, "hook_instance": hook_instance,
                 "indicator": c[2], "suggestions": json.dumps(c[3]), "issued_at": now} for c in cards]
        with self.engine.begin() as conn:
            conn.execute(insert(issued_card), rows)

    def issued(self, card_uuid: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(issued_card).where(issued_card.c.uuid == card_uuid)).mappings().first()
        return dict(row) if row else None

    # -- feedback -------------------------------------------------------------------
    def store_feedback(self, service_id: str, items: list[dict]) -> dict[str, int]:
        """Store feedback items; returns counts of stored, duplicate and unknown-card items."""
        counts = Counter(stored=0, duplicates=0, unknownCards=0)
        uuids = {i["card"] for i in items}
        with self.engine.begin() as conn:
            known = {r.uuid: r for r in conn.execute(
                select(issued_card.c.uuid, issued_card.c.rule_id, issued_card.c.service_id,
                       issued_card.c.hook_instance).where(issued_card.c.uuid.in_(uuids)))}
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
                counts["stored"] += 1
            except IntegrityError:
                counts["duplicates"] += 1
        return dict(counts)

    def feedback_rows(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(feedback).order_by(feedback.c.id)).mappings()]

    def report(self) -> list[dict]:
        """Per rule: cards issued, accepted, overridden, and the most frequent override reasons."""
        with self.engine.connect() as conn:
            issued: dict[str, int] = dict(conn.execute(
                select(issued_card.c.rule_id, func.count()).group_by(issued_card.c.rule_id)).all())
            rows = conn.execute(select(feedback.c.rule_id, feedback.c.outcome, feedback.c.override_code,
                                       feedback.c.card_uuid)).all()
        outcome: dict[str, dict[str, set]] = defaultdict(lambda: {"accepted": set(), "overridden": set()})
        reasons: dict[str, Counter] = defaultdict(Counter)
        for rule_id, out, code, card in rows:
            key = rule_id or "(unknown card)"
            outcome[key][out].add(card)
            if out == "overridden" and code:
                reasons[key][code] += 1
        report = []
        for rule_id in sorted(set(issued) | set(outcome)):
            report.append({
                "rule": rule_id,
                "issued": issued.get(rule_id, 0),
                "accepted": len(outcome[rule_id]["accepted"]),
                "overridden": len(outcome[rule_id]["overridden"]),
                "topOverrideReasons": reasons[rule_id].most_common(3),
            })
        return report

    # -- JWT replay cache -----------------------------------------------------------
    def claim_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a token id; False when it was seen before and has not expired (a replay)."""
        now = _utcnow()
        with self.engine.begin() as conn:
            if now.timestamp() - self._purged_at > 60:
                conn.execute(delete(seen_token).where(seen_token.c.expires_at < now))
                self._purged_at = now.timestamp()
            try:
                with conn.begin_nested():
                    conn.execute(insert(seen_token), [{"issuer": issuer, "jti": jti,
                                                       "expires_at": _aware(expires_at)}])
                return True
            except IntegrityError:
                row = conn.execute(select(seen_token.c.expires_at).where(
                    (seen_token.c.issuer == issuer) & (seen_token.c.jti == jti))).first()
                if row is not None and _aware(row[0]) < now:
                    conn.execute(delete(seen_token).where(
                        (seen_token.c.issuer == issuer) & (seen_token.c.jti == jti)))
                    conn.execute(insert(seen_token), [{"issuer": issuer, "jti": jti,
                                                       "expires_at": _aware(expires_at)}])
                    return True
                return False
