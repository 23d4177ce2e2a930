"""Issued cards under gunicorn: several worker processes answer hook calls while their records are
written behind the response; a clean shutdown (SIGTERM) writes every record that was acknowledged."""

from __future__ import annotations

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
