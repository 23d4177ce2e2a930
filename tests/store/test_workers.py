"""Issued cards under gunicorn: several worker processes answer hook calls while their records are
written behind the response; a clean shutdown (SIGTERM) writes every record that was acknowledged."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid

import requests
from sqlalchemy import create_engine, func, select

from cdshooks.store.schema import issued_card

from ..gunicorn_server import gunicorn

PATIENT = "demo-twitching-weakness"


def call(base: str) -> list[dict]:
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "fhirServer": f"{base}/fhir",
            "context": {"userId": "Practitioner/example", "patientId": PATIENT}}
    resp = requests.post(f"{base}/cds-services/fasciculation-patient-view", json=body,
                         headers={"Connection": "close"}, timeout=15)
    assert resp.status_code == 200, resp.text
    return resp.json()["cards"]


def test_a_clean_shutdown_loses_no_acknowledged_card_record(tmp_path, db_url):
    with gunicorn(tmp_path, workers=2, CDSHOOKS_AUTH="off", CDSHOOKS_DATABASE_URL=db_url,
                  CDSHOOKS_FHIR_SERVERS="{base}/fhir") as server:
        issued = [c["uuid"] for _ in range(20) for c in call(server.base)]
        assert issued, "the demo patient gets cards"
        # feedback for the last card, whichever worker takes it, finds the issuing rule
        item = {"card": issued[-1], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31Z",
                "overrideReason": {"reason": {"system": "https://cdshooks.example.org/fasciculation/override-reason",
                                              "code": "already-addressed"}}}
        resp = requests.post(f"{server.base}/cds-services/fasciculation-patient-view/feedback",
                             json={"feedback": [item]}, timeout=10)
        assert resp.json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
        issued += [c["uuid"] for c in call(server.base)]   # queued just before the shutdown
        assert server.stop() == 0
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(select(issued_card.c.uuid)).scalars())
            assert conn.execute(select(func.count()).select_from(issued_card)).scalar() == len(issued)
    finally:
        engine.dispose()
    assert stored == set(issued)


def test_records_queued_behind_a_locked_table_are_written_at_shutdown(tmp_path, db_url):
    """The database holds its write lock while calls are answered: their records wait in the queue.
    SIGTERM arrives; the lock is released a moment later; the stopping worker writes them all."""
    with gunicorn(tmp_path, workers=1, CDSHOOKS_AUTH="off", CDSHOOKS_DATABASE_URL=db_url,
                  CDSHOOKS_FHIR_SERVERS="{base}/fhir") as server:
        lock = _write_lock(db_url)
        try:
            issued = [c["uuid"] for _ in range(5) for c in call(server.base)]
            assert issued
            engine = create_engine(db_url)
            with engine.connect() as conn:  # reading still works: nothing was written yet
                assert conn.execute(select(func.count()).select_from(issued_card)).scalar() == 0
            engine.dispose()
            os.killpg(server.proc.pid, signal.SIGTERM)
            time.sleep(1.0)
        finally:
            lock.rollback()
            lock.close()
        assert server.stop() == 0
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(conn.execute(select(issued_card.c.uuid)).scalars()) == set(issued)
    finally:
        engine.dispose()


def _write_lock(db_url: str):
    """A connection holding the issued_card table against writers (readers still read)."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn
    import psycopg

    conn = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
    conn.execute("LOCK TABLE issued_card IN EXCLUSIVE MODE")
    return conn
