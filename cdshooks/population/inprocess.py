"""The service in-process: hook calls answered through the service's own HTTP stack, off-line.

``Service`` builds the app with ``create_app`` (authentication off, a temporary instance
folder, an in-memory SQLite database) and POSTs requests to ``/cds-services/<id>`` through
Flask's test client: the code path an HTTP call takes. The engine runs on a fixed clock, so
a run can replay a date; relative fixture dates (``$now-3d``) are resolved against the same
instant.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from .. import logs
from ..service.engine import SERVICE_IDS, Engine
from ..service.hook_request import InputError

__all__ = ["Service", "Answer"]


class _ReplayEngine(Engine):
    """The service's engine on a fixed clock: every call is answered as of ``now``."""

    def __init__(self, engine: Engine, now: datetime):
        super().__init__(engine.settings, engine.store)
        self.now = now

    def answer(self, service_id: str, body: object, now: datetime | None = None,
               deadline: float | None = None, cutoff: float | None = None,
               defer: Callable[[Callable[[], None]], object] | None = None) -> dict:
        return super().answer(service_id, body, now or self.now, deadline, cutoff, defer)


class _Collector(logging.Handler):
    """Keeps the service's error events (a rule that raised, a call that failed) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.events: list[tuple[str, dict]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append((record.getMessage(), dict(getattr(record, "fields", None) or {})))


@dataclass
class Answer:
    """One hook call's outcome: the HTTP status, the body, and the rules that raised during it."""

    status: int
    body: dict
    failed_rules: list[str] = field(default_factory=list)

    @property
    def cards(self) -> list[dict]:
        return list(self.body.get("cards") or []) if self.status == 200 else []

    def problem(self) -> str:
        """The OperationOutcome's diagnostics of a non-200 answer."""
        issues = self.body.get("issue") or [{}]
        return f"the service answered {self.status}: {issues[0].get('diagnostics', 'no diagnostics')}"


class Service:
    """The CDS service built by ``create_app`` in a temporary instance, answering through the test client.

    Settings come from the ``CDSHOOKS_*`` environment (rule windows, disabled rules), with
    authentication off and an in-memory database. While it is open, the service's log lines
    are collected rather than printed: ``call()`` reports the rules that raised, and the
    commands' output stays readable. ``close()`` puts the previous log handlers back.
    """

    def __init__(self, now: datetime):
        from .. import create_app
        from ..config import ConfigError, Settings

        self._tmp = tempfile.TemporaryDirectory(prefix="cdshooks-batch-")
        self._handlers, self._level = list(logs.logger.handlers), logs.logger.level
        try:
            settings = Settings.from_env(auth="off", instance_path=self._tmp.name, database_url="sqlite://",
                                         log_level="ERROR")
        except ConfigError as exc:
            self.close()
            raise InputError(str(exc)) from None
        self.app = create_app(settings)
        state = self.app.extensions["cdshooks"]
        state.engine = _ReplayEngine(state.engine, now)
        self.engine: Engine = state.engine
        self._collector = _Collector()
        logs.logger.handlers[:] = [self._collector]
        self._client = self.app.test_client()

    def templates(self, hook: str) -> dict[str, str]:
        return dict(self.engine.services[SERVICE_IDS[hook]].prefetch)

    def rule_ids(self, hook: str) -> list[str]:
        return [r.id for r in self.engine.services[SERVICE_IDS[hook]].rules]

    def call(self, request: dict) -> Answer:
        """POST ``request`` to its hook's service, as an EHR would."""
        self._collector.events.clear()
        resp = self._client.post(f"/cds-services/{SERVICE_IDS[request['hook']]}", json=request)
        body = resp.get_json(silent=True)
        resp.close()  # as a server closes a sent answer: what the app does after sending runs now
        failed = [f.get("rule", "?") for name, f in self._collector.events if name == "rule.failed"]
        return Answer(resp.status_code, body if isinstance(body, dict) else {}, failed)

    def close(self) -> None:
        app = getattr(self, "app", None)
        if app is not None:
            app.extensions["cdshooks"].store.dispose()
        logs.logger.handlers[:] = self._handlers
        logs.logger.setLevel(self._level)
        self._tmp.cleanup()

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
