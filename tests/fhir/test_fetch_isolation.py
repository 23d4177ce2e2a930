"""Fetch isolation, against real hostile servers on loopback: a call's requests end at its
deadline wherever they are (headers or body dripping one byte at a time), nothing keeps reading
for a call that has answered, and a hammered slow server cannot starve calls to a healthy one."""

from __future__ import annotations

import threading
import time

import pytest

from cdshooks.fhir.client import FetchError, FhirClient

from ..conftest import make_settings
from ..drip import serve_drip
from ..fault_fhir import create_app as fault_app
from ..loopback import serve_wsgi

QUERY = "Condition?patient=demo-twitching-weakness"


def wait_until(predicate, seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_requests_stop_at_the_deadline_while_the_server_drips(tmp_path, mode):
    settings = make_settings(tmp_path, fetch_timeout=5.0, call_budget=5.0)
    with serve_drip(mode) as drip:
        started = time.monotonic()
        deadline = started + 0.5
        with pytest.raises(FetchError) as err:
            FhirClient(f"{drip.url}/fhir", settings).search_many({"a": QUERY, "b": QUERY, "c": QUERY},
                                                                 deadline=deadline)
        assert err.value.reason == "timed out"
        assert time.monotonic() - started < 0.9
        assert wait_until(lambda: drip.open_count() == 0, 1.0), "a fetch thread kept reading after the call ended"
        connections = drip.snapshot()
        assert len(connections) == 3
        assert all(c.closed_by_client is not None and c.closed_by_client - deadline < 0.3 for c in connections)


def test_the_fetch_timeout_bounds_one_request_in_total(tmp_path):
    settings = make_settings(tmp_path, fetch_timeout=0.3, call_budget=5.0)
    with serve_drip("body") as drip:
        started = time.monotonic()
        with pytest.raises(FetchError):
            FhirClient(f"{drip.url}/fhir", settings).search_many({"a": QUERY})
        assert time.monotonic() - started < 0.8
        assert wait_until(lambda: drip.open_count() == 0, 1.0)


def test_when_one_key_fails_the_others_of_the_call_stop_at_once(tmp_path):
    """A key that fails at once ends the call (412): the dripping fetches of the same call are cut
    then, not at the deadline."""
    with serve_drip("body") as drip:
        settings = make_settings(tmp_path, fetch_timeout=5.0, call_budget=5.0)
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            FhirClient(f"{drip.url}/fhir", settings).search_many({"slow": QUERY, "bad": QUERY + "&_fail=1"},
                                                                 deadline=started + 5.0)
        assert err.value.reason == "HTTP 500"
        assert time.monotonic() - started < 1.0
        assert wait_until(lambda: drip.open_count() == 0, 0.3), "the dripping fetch was cut when the call failed"
        assert len(drip.snapshot()) == 2


def test_a_healthy_server_answers_while_a_dripping_one_is_hammered(tmp_path):
    healthy_app = fault_app()
    slow_settings = make_settings(tmp_path, fetch_timeout=1.0, call_budget=1.0, fetch_per_server=4)
    with serve_wsgi(healthy_app) as healthy, serve_drip("body", interval=0.05) as drip:
        healthy_settings = make_settings(tmp_path, fetch_per_server=4)
        # warm-up: the first call pays for loading the fixtures
        FhirClient(f"{healthy}/fhir", healthy_settings).search_many({"k": QUERY})
        stop = threading.Event()
        slow_outcomes: list[str] = []

        def hammer() -> None:
            while not stop.is_set():
                try:
                    FhirClient(f"{drip.url}/fhir", slow_settings).search_many({"a": QUERY, "b": QUERY, "c": QUERY})
                    slow_outcomes.append("answered")
                except FetchError as exc:
                    slow_outcomes.append(exc.reason)

        attackers = [threading.Thread(target=hammer, daemon=True) for _ in range(20)]
        for t in attackers:
            t.start()
        try:
            assert wait_until(lambda: drip.open_count() >= 4, 2.0), "the dripping server is busy"
            timings = []
            for _ in range(10):
                started = time.monotonic()
                out = FhirClient(f"{healthy}/fhir", healthy_settings).search_many({"k": QUERY, "j": QUERY})
                timings.append(time.monotonic() - started)
                assert out["k"]["resourceType"] == "Bundle"
            assert max(timings) < 0.8, timings
            assert drip.open_count() <= 4, "at most fetch_per_server requests to one server"
        finally:
            stop.set()
            for t in attackers:
                t.join(timeout=5)
        assert slow_outcomes and set(slow_outcomes) == {"timed out"}
        assert wait_until(lambda: drip.open_count() == 0, 1.5), [
            (round(c.opened - time.monotonic(), 2), c.request_line) for c in drip.snapshot() if c.closed_by_client is None]
