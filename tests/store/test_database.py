"""The store against real databases (SQLite, and PostgreSQL in a throwaway cluster): migrations,
the replay cache under concurrency, issued cards written behind the response, retention, the
feedback report computed in SQL, and a database that does not answer."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, insert, inspect, select, text

from cdshooks import metrics
from cdshooks.store import IssuedCard, Store, StoreUnavailable, migrate
from cdshooks.store.schema import issued_card, seen_token

from ..conftest import REPO


class _Now:
    """The current time at each use (a test may run minutes after this module was imported)."""

    def __add__(self, delta: timedelta) -> datetime:
        return datetime.now(timezone.utc) + delta

    def __sub__(self, delta: timedelta) -> datetime:
        return datetime.now(timezone.utc) - delta


NOW = _Now()


def sample(name: str, labels: dict) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.init()
    yield s
    s.close()


def card(uuid: str, rule: str = "rule-a", indicator: str = "info") -> IssuedCard:
    return IssuedCard(uuid, rule, indicator, [f"{uuid}-s1"])


def item(uuid: str, outcome: str = "accepted", ts: str = "2026-11-21T10:05:31Z", code: str | None = None) -> dict:
    got: dict = {"card": uuid, "outcome": outcome, "outcomeTimestamp": ts}
    if outcome == "accepted":
        got["acceptedSuggestions"] = [{"id": f"{uuid}-s1"}]
    if code:
        got["overrideReason"] = {"reason": {"system": "urn:test", "code": code}}
    return got


# -- migrations -----------------------------------------------------------------------
def test_migrations_build_the_schema_at_head_and_are_idempotent(db_url):
    engine = create_engine(db_url)
    try:
        assert migrate.current(engine) is None
        assert migrate.upgrade(engine) == (None, migrate.head())
        assert migrate.upgrade(engine) == (migrate.head(), migrate.head())
        tables = set(inspect(engine).get_table_names())
        assert {"issued_card", "feedback", "seen_token", "alembic_version"} <= tables
        indexes = {i["name"] for i in inspect(engine).get_indexes("issued_card")}
        assert "ix_issued_card_issued_at" in indexes
    finally:
        engine.dispose()


def test_a_database_made_before_migrations_is_stamped_and_upgraded(db_url):
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as conn:  # as the schema was created before migrations existed
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(insert(issued_card), [{"uuid": "old", "rule_id": "r", "service_id": "s", "hook_instance": "h",
                                                "indicator": "info", "suggestions": "[]", "issued_at": NOW - timedelta(0)}])
        assert migrate.upgrade(engine) == (None, migrate.head())
        with engine.connect() as conn:
            assert conn.execute(select(issued_card.c.uuid)).scalars().all() == ["old"]
    finally:
        engine.dispose()


def test_workers_booting_together_migrate_once_without_racing(db_url):
    """Four processes start at the same moment on an empty database; all come up, at head."""
    code = ("import sys; from cdshooks.store import Store; s = Store(sys.argv[1]); s.init(); s.close(); "
            "print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-600:] for _, err in outputs]
    engine = create_engine(db_url)
    try:
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def test_a_schema_behind_head_stops_start_up_when_migrations_are_off(db_url):
    engine = create_engine(db_url)
    migrate.upgrade(engine, "0001")
    engine.dispose()
    s = Store(db_url, migrate_on_init=False)
    with pytest.raises(RuntimeError, match="cdshooks db upgrade"):
        s.init()
    s.close()


# -- replay cache ---------------------------------------------------------------------
def test_a_jti_is_claimed_once_until_it_expires(store):
    later = NOW + timedelta(hours=2)
    assert store.claim_jti("iss", "j1", later) is True
    assert store.claim_jti("iss", "j1", later) is False
    assert store.claim_jti("other-iss", "j1", later) is True
    assert store.claim_jti("iss", "old", NOW - timedelta(seconds=1)) is True
    assert store.claim_jti("iss", "old", later) is True   # the expired entry is taken over
    assert store.claim_jti("iss", "old", later) is False


def test_concurrent_claims_of_one_jti_let_exactly_one_through(db_url):
    stores = [Store(db_url) for _ in range(2)]
    stores[0].init()
    later = NOW + timedelta(hours=2)
    try:
        for round_ in range(10):
            barrier = threading.Barrier(8)

            def claim(i: int, jti: str = f"jti-{round_}") -> bool:
                barrier.wait()
                return stores[i % 2].claim_jti("iss", jti, later)

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(claim, range(8)))
            assert results.count(True) == 1, results
    finally:
        for s in stores:
            s.close()


# -- issued cards, written behind the response ------------------------------------------
def test_feedback_right_after_the_answer_finds_the_queued_card(store):
    store.record_issued("svc", "hook-1", [card("c1", "rule-a", "warning")])
    counts = store.store_feedback("svc", [item("c1")])
    assert counts == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    row = store.feedback_rows()[0]
    assert (row["rule_id"], row["hook_instance"]) == ("rule-a", "hook-1")


def test_closing_writes_every_queued_record(db_url):
    writer = Store(db_url)
    writer.init()
    for n in range(300):
        writer.record_issued("svc", f"h{n}", [card(f"c{n}-{i}") for i in range(3)])
    writer.close()
    reader = Store(db_url, queue_size=0)
    with reader.engine.connect() as conn:
        assert conn.execute(select(issued_card.c.uuid)).scalars().all().__len__() == 900
    reader.close()


def test_a_full_queue_drops_records_and_counts_them(db_url):
    s = Store(db_url, queue_size=2)
    s.init()
    before = sample("cdshooks_issued_card_records_total", {"result": "dropped"})
    s.record_issued("svc", "h", [card("a"), card("b"), card("c")])   # more than the queue holds
    assert sample("cdshooks_issued_card_records_total", {"result": "dropped"}) == before + 3
    s.record_issued("svc", "h", [card("d")])
    assert s.issued("d") is not None and s.issued("a") is None
    s.close()


def test_with_the_database_down_records_degrade_and_the_replay_check_raises():
    s = Store("postgresql+psycopg://nobody@127.0.0.1:9/none", connect_timeout=1)
    dropped = sample("cdshooks_issued_card_records_total", {"result": "dropped"})
    s.record_issued("svc", "h", [card("x")])   # never raises: queued, retried in the background
    with pytest.raises(StoreUnavailable):
        s.claim_jti("iss", "j", NOW + timedelta(hours=2))
    with pytest.raises(StoreUnavailable):
        s.store_feedback("svc", [item("x")])
    assert s.ping() is False
    s.close()   # the database never came back: the record is dropped, and counted
    assert sample("cdshooks_issued_card_records_total", {"result": "dropped"}) == dropped + 1
    assert sample("cdshooks_store_errors_total", {"operation": "claim_jti"}) >= 1


# -- retention --------------------------------------------------------------------------
def test_purge_deletes_expired_tokens_and_cards_past_retention(db_url):
    s = Store(db_url, issued_retention_days=30, queue_size=0)
    s.init()
    rows = [{"uuid": u, "rule_id": "r", "service_id": "s", "hook_instance": "h", "indicator": "info",
             "suggestions": "[]", "issued_at": NOW - timedelta(days=age)} for u, age in (("old", 31), ("new", 29))]
    with s.engine.begin() as conn:
        conn.execute(insert(issued_card), rows)
    s.claim_jti("iss", "expired", NOW - timedelta(seconds=5))
    s.claim_jti("iss", "live", NOW + timedelta(hours=2))
    assert s.purge() == {"replay_entries": 1, "issued_cards": 1}
    with s.engine.connect() as conn:
        assert conn.execute(select(issued_card.c.uuid)).scalars().all() == ["new"]
        assert conn.execute(select(seen_token.c.jti)).scalars().all() == ["live"]
    assert s.claim_jti("iss", "live", NOW + timedelta(hours=2)) is False
    s.close()


def test_zero_retention_keeps_issued_cards(db_url):
    s = Store(db_url, issued_retention_days=0, queue_size=0)
    s.init()
    with s.engine.begin() as conn:
        conn.execute(insert(issued_card), [{"uuid": "ancient", "rule_id": "r", "service_id": "s", "hook_instance": "h",
                                            "indicator": "info", "suggestions": "[]",
                                            "issued_at": NOW - timedelta(days=4000)}])
    assert s.purge()["issued_cards"] == 0
    s.close()


# -- the report, aggregated in SQL -------------------------------------------------------
def test_report_counts_cards_outcomes_and_top_reasons_per_rule(store):
    store.record_issued("svc", "h1", [card("a1", "rule-a"), card("a2", "rule-a"), card("a3", "rule-a"),
                                      card("b1", "rule-b", "critical")])
    store.store_feedback("svc", [
        item("a1"), item("a1", ts="2026-11-21T10:06:00Z"),          # one card accepted twice counts once
        item("a2", "overridden", code="patient-declined"),
        item("a3", "overridden", code="already-addressed"),
        item("a3", "overridden", ts="2026-11-21T11:00:00Z", code="already-addressed"),
        item("b1", "overridden", code="data-incorrect"),
        item("zz", "accepted"),                                     # not a card of ours
    ])
    report = {r["rule"]: r for r in store.report()}
    assert report["rule-a"] == {"rule": "rule-a", "issued": 3, "accepted": 1, "overridden": 2,
                                "topOverrideReasons": [("already-addressed", 2), ("patient-declined", 1)]}
    assert report["rule-b"]["issued"] == 1 and report["rule-b"]["overridden"] == 1
    assert report["(unknown card)"] == {"rule": "(unknown card)", "issued": 0, "accepted": 1, "overridden": 0,
                                        "topOverrideReasons": []}


def test_feedback_stored_before_its_card_record_is_attributed_in_the_report(db_url):
    """Feedback reaching another worker before this one wrote the card still counts for its rule."""
    s = Store(db_url, queue_size=0)
    s.init()
    assert s.store_feedback("svc", [item("late", "overridden", code="patient-declined")])["unknownCards"] == 1
    s.record_issued("svc", "h", [card("late", "rule-late")])
    report = {r["rule"]: r for r in s.report()}
    assert report["rule-late"]["overridden"] == 1 and "(unknown card)" not in report
    s.close()
