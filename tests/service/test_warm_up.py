"""Start-up warm-up: no hook call is a worker's cold first call, and the warm-up leaves no trace."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from cdshooks import create_app
from cdshooks.service.engine import SERVICE_IDS, _warm_up_request

from ..conftest import make_settings

REPO = Path(__file__).resolve().parent.parent.parent

# In a fresh process: build the app, then answer every fixture scenario and list the modules that
# the calls imported. Anything a first call would have to load shows up here.
_PROBE = """
import json, sys
from cdshooks import create_app
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.tryit.fixtures import for_scenario, scenarios
app = create_app()
client = app.test_client()
engine = app.extensions["cdshooks"].engine
bodies = [(SERVICE_IDS[sc.hook], for_scenario(sc, engine.services[SERVICE_IDS[sc.hook]].prefetch))
          for sc in scenarios()]
before = set(sys.modules)
statuses = [client.post(f"/cds-services/{sid}", json=body).status_code for sid, body in bodies]
print(json.dumps({"statuses": sorted(set(statuses)), "calls": len(statuses),
                  "imported": sorted(set(sys.modules) - before)}))
"""


def test_no_call_imports_anything_after_start_up(tmp_path):
    env = dict(os.environ, CDSHOOKS_ENV="test", CDSHOOKS_AUTH="off", CDSHOOKS_LOG_LEVEL="ERROR",
               CDSHOOKS_INSTANCE_PATH=str(tmp_path), CDSHOOKS_DATABASE_URL=f"sqlite:///{tmp_path / 'w.sqlite'}")
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200] and result["calls"] > 50
    assert result["imported"] == []


def test_warm_up_records_nothing_and_logs_one_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cdshooks"):
        app = create_app(make_settings(tmp_path, log_level="INFO"))
    try:
        events = [r.getMessage() for r in caplog.records]
        assert "hook.answered" not in events and "rule.failed" not in events
        assert events.count("service.started") == 1
        store = app.extensions["cdshooks"].store
        with store.engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT COUNT(*) FROM issued_card")).scalar() == 0
    finally:
        app.extensions["cdshooks"].store.dispose()


def test_the_warm_up_calls_reach_the_rules(tmp_path):
    """The synthetic calls are answered with cards (so the rules' code paths are exercised)."""
    app = create_app(make_settings(tmp_path))
    try:
        engine = app.extensions["cdshooks"].engine
        for hook, service_id in SERVICE_IDS.items():
            cards = engine.answer(service_id, _warm_up_request(engine.services[service_id]))["cards"]
            assert len(cards) >= 3, hook
    finally:
        app.extensions["cdshooks"].store.dispose()
