"""Batch: hook calls built from FHIR files, run off-line through the service's own HTTP stack.

The ``cdshooks`` commands added here (``add_commands``):

    evaluate BUNDLE       one patient: the cards as a table, or the exact response JSON
    simulate PATH...      silent mode: every patient of Bundles / Bulk NDJSON, cards per rule, timing
    load-fixtures URL     the fixture resources PUT to a FHIR server in one transaction

``evaluate`` and ``simulate`` play the EHR: ``hook_request()`` builds the request a client
would send for a patient (``scenario.build_request`` with the service's prefetch templates,
draft orders from the data or given), and ``Service`` POSTs it to ``/cds-services/<id>``
of an app built by ``create_app`` (authentication off, a temporary instance folder, an
in-memory SQLite database) through Flask's test client: the code path an HTTP call takes.
The engine runs on a fixed clock, so ``--now`` replays a date; relative fixture dates
(``$now-3d``) are resolved against the same instant. The playground builds its requests
with ``hook_request()`` too.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, TextIO

from . import logs
from .engine import SERVICE_IDS, Engine
from .fixtures import (FIXTURES_DIR, INDEX_FILE, REQUEST_TYPES, draft_orders, is_draft_order, load_resources,
                       patients, resolve_dates)
from .rules import HOOKS
from .scenario import build_request

__all__ = ["add_commands", "hook_request", "check_hook", "parse_now", "read_fhir", "InputError", "SeveralPatients",
           "NoDraftOrders", "Service", "Answer", "cards_table", "transaction", "fixture_folders"]

_PROGRESS_WIDTH = 30
_HOOK_HELP = f"{' | '.join(HOOKS)} (default patient-view)"


class InputError(ValueError):
    """Data a hook request cannot be built from; the message is meant for the user."""


class SeveralPatients(InputError):
    """The data holds more than one patient and none was named."""

    def __init__(self, ids: list[str], what: str):
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        super().__init__(f"{what} holds {len(ids)} patients ({shown})")
        self.ids = ids


class NoDraftOrders(InputError):
    """An order hook was asked for and there is no draft order to send."""


# -- building requests ------------------------------------------------------------------------

def check_hook(hook: str) -> None:
    """Raise ``InputError`` unless ``hook`` is one this service answers."""
    if hook not in HOOKS:
        raise InputError(f"unknown hook {hook!r}; expected one of {', '.join(HOOKS)}")


def parse_now(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (no zone means UTC; a date means midnight)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"not an ISO 8601 date or date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def read_fhir(path: str | Path) -> object:
    """The JSON of a FHIR file: a Bundle or resource (``.json``) or, for ``.ndjson``, the list of its lines."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if path.suffix == ".ndjson":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _check_fhir(data: object, what: str) -> None:
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(i, dict) and isinstance(i.get("resourceType"), str) for i in items):
        raise InputError(f"{what} is not FHIR: expected a Bundle or resources with a resourceType")


def _owned_by(order: dict, patient_id: str) -> dict:
    """A given draft order made the patient's: its subject (or patient) set, status ``draft`` when it has none."""
    order = dict(order)
    rtype = order.get("resourceType")
    if rtype in REQUEST_TYPES and rtype != "SupplyRequest":
        order["patient" if rtype in ("NutritionOrder", "VisionPrescription") else "subject"] = {
            "reference": f"Patient/{patient_id}"}
    if rtype in REQUEST_TYPES:
        order.setdefault("status", "draft")
    return order


def _order_resources(data: object, what: str) -> list[dict]:
    """The request resources (and Medications they reference) in a Bundle, a resource or a list."""
    _check_fhir(data, what)
    found = [r for r in _flat(data) if r.get("resourceType") in REQUEST_TYPES | {"Medication"}]
    if not any(r["resourceType"] in REQUEST_TYPES for r in found):
        raise InputError(f"{what} holds no order (one of {', '.join(sorted(REQUEST_TYPES))})")
    for n, r in enumerate(found, 1):
        if not isinstance(r.get("id"), str):
            r["id"] = f"given-order-{n}"
    return found


def _flat(data: object) -> Iterable[dict]:
    if isinstance(data, list):
        for item in data:
            yield from _flat(item)
    elif isinstance(data, dict):
        if data.get("resourceType") == "Bundle":
            for entry in data.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    yield from _flat(entry["resource"])
        else:
            yield dict(data)


def hook_request(data: object, hook: str, templates: dict[str, str], *, now: datetime,
                 patient_id: str | None = None, orders: list[dict] | None = None,
                 selections: Iterable[str] | None = None, what: str = "the data") -> dict:
    """The CDS Hooks request a client would send for one patient of ``data`` (a Bundle, resource or list).

    Raises ``InputError`` (``SeveralPatients``, ``NoDraftOrders``) with a message for the user
    when the data is not FHIR, holds no Patient, holds several and ``patient_id`` is None,
    lacks the named patient, or when an order hook has no draft order to send. ``orders``
    replace the data's own draft orders and are made the patient's (``subject``).
    """
    check_hook(hook)
    _check_fhir(data, what)
    try:
        split = patients(resolve_dates(data, now))  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None
    if not split:
        raise InputError(f"{what} holds no Patient (with an id)")
    if patient_id is None:
        if len(split) > 1:
            raise SeveralPatients(list(split), what)
        patient_id = next(iter(split))
    elif patient_id not in split:
        raise InputError(f"{what} holds no Patient/{patient_id}")
    resources = split[patient_id]
    if orders is not None:
        orders = [_owned_by(o, patient_id) for o in orders]
    if hook != "patient-view" and not (orders if orders is not None else draft_orders(resources)):
        raise NoDraftOrders(f"{hook} needs draft orders and {what} has no request resource with status 'draft' "
                            f"for Patient/{patient_id}")
    return build_request({"resourceType": "Bundle", "type": "collection",
                          "entry": [{"resource": r} for r in resources]},
                         hook, templates, patient_id=patient_id, now=now, orders=orders, selections=selections)


# -- the service in-process ---------------------------------------------------------------------

class _ReplayEngine(Engine):
    """The service's engine on a fixed clock: every call is answered as of ``now``."""

    def __init__(self, engine: Engine, now: datetime):
        super().__init__(engine.settings, engine.store)
        self.now = now

    def answer(self, service_id: str, body: object, now: datetime | None = None,
               deadline: float | None = None) -> dict:
        return super().answer(service_id, body, now or self.now, deadline)


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
        from . import create_app
        from .config import ConfigError, Settings

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


# -- evaluate ---------------------------------------------------------------------------------

def _action_text(action: dict) -> str:
    """``create ServiceRequest``, ``delete MedicationRequest/x``: what the action does to which resource."""
    resource = action.get("resource")
    target = resource.get("resourceType", "?") if isinstance(resource, dict) else action.get("resourceId", "?")
    return f"{action.get('type', '?')} {target}"


def _suggestion_text(suggestion: dict) -> str:
    actions = "; ".join(_action_text(a) for a in suggestion.get("actions") or [])
    return f"{suggestion.get('label', '')}" + (f" [{actions}]" if actions else "")


def _rule_of(card: dict) -> str:
    return ((card.get("source") or {}).get("topic") or {}).get("code") or "?"


def cards_table(cards: list[dict], width: int) -> str:
    """Cards as a text table: indicator, rule id, summary, suggestions (wrapped to ``width``)."""
    rows = [(c.get("indicator", ""), _rule_of(c), c.get("summary", ""),
             "\n".join(_suggestion_text(s) for s in c.get("suggestions") or []) or "-") for c in cards]
    head = ("indicator", "rule", "summary", "suggestions")
    w0 = max(len(head[0]), *(len(r[0]) for r in rows))
    w1 = max(len(head[1]), *(len(r[1]) for r in rows))
    rest = max(40, width - w0 - w1 - 6)
    w2 = max(len(head[2]), rest * 11 // 20)
    w3 = max(len(head[3]), rest - w2)
    lines = [f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]:<{w2}}  {head[3]}",
             f"{'-' * w0}  {'-' * w1}  {'-' * w2}  {'-' * w3}"]
    for ind, rid, summary, suggestions in rows:
        left = textwrap.wrap(summary, w2) or [""]
        right = [part for s in suggestions.splitlines() for part in textwrap.wrap(s, w3, subsequent_indent="  ")]
        for n in range(max(len(left), len(right))):
            cells = (ind if n == 0 else "", rid if n == 0 else "", left[n] if n < len(left) else "",
                     right[n] if n < len(right) else "")
            lines.append(f"{cells[0]:<{w0}}  {cells[1]:<{w1}}  {cells[2]:<{w2}}  {cells[3]}".rstrip())
    return "\n".join(lines)


def _load_orders(path: str | None) -> list[dict] | None:
    if path is None:
        return None
    return _order_resources(read_fhir(path), str(path))


def _cmd_evaluate(error: type[Exception], args: argparse.Namespace) -> int:
    try:
        check_hook(args.hook)
        now = parse_now(args.now) if args.now else datetime.now(timezone.utc)
        data = read_fhir(args.bundle)
        orders = _load_orders(args.orders)
        with Service(now) as service:
            try:
                request = hook_request(data, args.hook, service.templates(args.hook), now=now,
                                       patient_id=args.patient, orders=orders, what=args.bundle)
            except SeveralPatients as exc:
                raise InputError(f"{exc}; name one with --patient ID") from None
            except NoDraftOrders as exc:
                raise InputError(f"{exc}; give them with --orders FILE") from None
            answer = service.call(request)
    except InputError as exc:
        raise error(str(exc)) from None
    for rule_id in answer.failed_rules:
        print(f"cdshooks evaluate: warning: rule {rule_id} raised an error and gave no card", file=sys.stderr)
    if answer.status != 200:
        raise error(answer.problem())
    if args.json:
        print(json.dumps(answer.body, indent=2, ensure_ascii=False))
        return 0
    cards = answer.cards
    print(f"Patient/{request['context']['patientId']}  {args.hook}  as of {now.strftime('%Y-%m-%dT%H:%M:%SZ')}: "
          f"{len(cards)} card{'s' if len(cards) != 1 else ''}")
    if cards:
        print(cards_table(cards, shutil.get_terminal_size((120, 24)).columns))
    return 0


# -- simulate ---------------------------------------------------------------------------------

def _sources(path: Path) -> list[Path]:
    """The FHIR files under ``path``: itself, or a folder's ``*.json`` (not ``index.json``) and
    ``*.ndjson`` files, subfolders included, in name order."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name != INDEX_FILE
                  and p.suffix in (".json", ".ndjson"))


def _load_stream(path: Path, now: datetime, warn: Callable[[str], None]) -> dict[str, list[dict]]:
    """One PATH argument's patients; a folder's files are read as one stream, so a patient's resources
    spread over several files (Bulk Data NDJSON: one file per type) come together."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    items: list[object] = []
    for source in _sources(path):
        try:
            data = read_fhir(source)
            _check_fhir(data, str(source))
        except InputError as exc:
            if source == path:
                raise
            warn(f"skipped {exc}")
            continue
        items.append(data)
    try:
        return patients(resolve_dates(items, now))  # type: ignore[arg-type]
    except ValueError as exc:  # a malformed relative date
        raise InputError(f"{path}: {exc}") from None


class Progress:
    """Progress on stderr: a bar redrawn at most ten times a second on a terminal, otherwise a line
    every tenth of the run (so logs of a CI job stay short)."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total, self.stream, self.started = total, stream or sys.stderr, time.monotonic()
        self.tty = self.stream.isatty()
        self._step = max(1, total // 10)
        self._drawn = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        if self.tty:
            if now - self._drawn < 0.1 and done != self.total:
                return
            self._drawn = now
            filled = _PROGRESS_WIDTH * done // max(1, self.total)
            bar = "#" * filled + "." * (_PROGRESS_WIDTH - filled)
            self.stream.write(f"\rsimulate [{bar}] {done}/{self.total} patients  {elapsed:5.1f} s")
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif done % self._step == 0 or done == self.total:
            print(f"simulate: {done}/{self.total} patients ({100 * done // max(1, self.total)}%), "
                  f"{elapsed:.1f} s", file=self.stream, flush=True)


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Tally:
    """Silent-mode counts over a run: per rule, patients evaluated, cards, patients with a card, failures."""

    rules: list[str]
    patients: int = 0
    answered: int = 0
    cards: Counter = field(default_factory=Counter)
    carded: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)

    def add(self, answer: Answer, seconds: float) -> None:
        """Count one patient's answer; ``seconds`` is the time from data to answer (request building included)."""
        self.patients += 1
        self.seconds.append(seconds)
        self.failed.update(set(answer.failed_rules))
        if answer.status != 200:
            self.problems[answer.problem()] += 1
            return
        self.answered += 1
        per_rule = Counter(_rule_of(c) for c in answer.cards)
        self.cards.update(per_rule)
        self.carded.update(per_rule.keys())

    def rows(self) -> list[dict]:
        out = []
        for rid in sorted(set(self.rules) | set(self.cards)):
            evaluated = self.answered - self.failed[rid]
            out.append({"rule": rid, "evaluated": evaluated, "cards": self.cards[rid],
                        "patients": self.carded[rid], "failed": self.failed[rid],
                        "rate": round(self.carded[rid] / evaluated, 4) if evaluated else 0.0})
        return out


def _cmd_simulate(error: type[Exception], args: argparse.Namespace) -> int:
    def warn(message: str) -> None:
        print(f"cdshooks simulate: {message}", file=sys.stderr)

    started = time.perf_counter()
    try:
        check_hook(args.hook)
        now = parse_now(args.now) if args.now else datetime.now(timezone.utc)
        orders = _load_orders(args.orders)
        streams = [(p, _load_stream(Path(p), now, warn)) for p in args.paths]
    except InputError as exc:
        raise error(str(exc)) from None
    total = sum(len(s) for _, s in streams)
    if not total:
        raise error("no Patient found in " + ", ".join(args.paths))
    loaded = time.perf_counter() - started
    with Service(now) as service:
        templates = service.templates(args.hook)
        tally = Tally(service.rule_ids(args.hook))
        progress = Progress(total)
        for path, split in streams:
            for pid in split:
                began = time.perf_counter()
                try:
                    request = hook_request(split[pid], args.hook, templates, now=now, patient_id=pid,
                                           orders=orders, what=f"{path} Patient/{pid}")
                except NoDraftOrders:
                    tally.skipped["no draft orders"] += 1
                    tally.patients += 1
                except InputError as exc:
                    tally.skipped[str(exc)] += 1
                    tally.patients += 1
                else:
                    tally.add(service.call(request), time.perf_counter() - began)
                progress.update(tally.patients)
    elapsed = time.perf_counter() - started
    timing = {"totalSeconds": round(elapsed, 3), "loadSeconds": round(loaded, 3)}
    if tally.seconds:
        timing.update(p50Ms=round(_percentile(tally.seconds, 50) * 1000, 1),
                      p95Ms=round(_percentile(tally.seconds, 95) * 1000, 1))
    report = {"hook": args.hook, "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "patients": tally.patients,
              "answered": tally.answered, "rules": tally.rows(),
              "errors": [{"message": m, "patients": n} for m, n in tally.problems.items()],
              "skipped": [{"reason": m, "patients": n} for m, n in tally.skipped.items()], "timing": timing}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_simulation(report)
    return 1 if tally.problems or sum(tally.failed.values()) else 0


def _print_simulation(report: dict) -> None:
    print(f"{report['patients']} patients, hook {report['hook']}, as of {report['now']}: "
          f"{report['answered']} answered")
    rows = report["rules"]
    if rows:
        width = max(len("rule"), *(len(r["rule"]) for r in rows))
        print(f"{'rule':<{width}}  {'evaluated':>9}  {'cards':>6}  {'patients':>8}  {'rate':>6}  {'failed':>6}")
        for r in rows:
            print(f"{r['rule']:<{width}}  {r['evaluated']:>9}  {r['cards']:>6}  {r['patients']:>8}  "
                  f"{100 * r['rate']:>5.1f}%  {r['failed']:>6}")
    else:
        print(f"no rules run on {report['hook']}")
    for e in report["errors"]:
        print(f"error ({e['patients']} patients): {e['message']}")
    for s in report["skipped"]:
        print(f"skipped ({s['patients']} patients): {s['reason']}")
    t = report["timing"]
    per = f"; per patient p50 {t['p50Ms']:.1f} ms, p95 {t['p95Ms']:.1f} ms" if "p50Ms" in t else ""
    print(f"time: {t['totalSeconds']:.2f} s total ({t['loadSeconds']:.2f} s reading files){per}")


# -- load-fixtures ----------------------------------------------------------------------------

def fixture_folders(extra: str | None) -> list[Path]:
    """The repository's ``fhir_fixtures/`` and the ``CDSHOOKS_FIXTURES_DIR`` folder, those that exist, once each."""
    out: list[Path] = []
    for folder in [FIXTURES_DIR] + ([Path(extra)] if extra else []):
        if folder.is_dir() and folder.resolve() not in out:
            out.append(folder.resolve())
    return out


# Types a server accepts as a bare ``{"resourceType", "id"}``: stand-ins for references the fixtures
# make to resources they do not hold (``requester: Practitioner/example``), so a server that checks
# references on write (HAPI does by default) accepts the transaction.
_STUB_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "Location", "Medication", "Device"})


def _references(value: object) -> Iterable[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _references(v)
    elif isinstance(value, list):
        for v in value:
            yield from _references(v)


def transaction(folders: Iterable[Path], now: datetime) -> tuple[dict, list[str]]:
    """A ``transaction`` Bundle PUTting every record resource of the folders' FHIR files (dates resolved),
    and the references it makes to resources neither it nor a stub holds.

    Draft orders are left out (they belong to a hook's context, as on the dev ``/fhir``); the
    first resource of a ``Type/id`` wins, as there. A reference to a missing resource of a
    ``_STUB_TYPES`` type adds a bare stub of it.
    """
    entries: dict[str, dict] = {}
    for folder in folders:
        for source in _sources(folder):
            for res in resolve_dates(load_resources(source), now):  # type: ignore[union-attr]
                if is_draft_order(res) or not isinstance(res.get("id"), str):
                    continue
                key = f"{res['resourceType']}/{res['id']}"
                entries.setdefault(key, {"resource": res, "request": {"method": "PUT", "url": key}})
    dangling: list[str] = []
    for ref in sorted({r for e in list(entries.values()) for r in _references(e["resource"])}):
        rtype, _, rid = ref.partition("/")
        if ref in entries or ref.startswith("#") or not rid or "/" in rid:
            continue
        if rtype in _STUB_TYPES:
            entries[ref] = {"resource": {"resourceType": rtype, "id": rid}, "request": {"method": "PUT", "url": ref}}
        else:
            dangling.append(ref)
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries.values())}, dangling


def _cmd_load_fixtures(error: type[Exception], args: argparse.Namespace) -> int:
    import requests

    from .config import ConfigError, Settings

    if args.dir:
        folders = [Path(d).resolve() for d in args.dir]
    else:
        try:
            folders = fixture_folders(Settings.from_env().fixtures_dir or None)
        except ConfigError as exc:
            raise error(str(exc)) from None
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing or not folders:
        raise error(f"no fixture folder: {', '.join(missing) or FIXTURES_DIR} (set CDSHOOKS_FIXTURES_DIR or --dir)")
    try:
        bundle, dangling = transaction(folders, datetime.now(timezone.utc))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read the fixtures: {exc}") from None
    if not bundle["entry"]:
        raise error(f"no FHIR resources in {', '.join(map(str, folders))}")
    for ref in dangling:
        print(f"cdshooks load-fixtures: warning: {ref} is referenced but not in the fixtures", file=sys.stderr)
    base = args.fhir_base_url.rstrip("/")
    try:
        resp = requests.post(base, data=json.dumps(bundle), timeout=args.timeout,
                             headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    except requests.RequestException as exc:
        raise error(f"cannot reach {base}: {type(exc).__name__}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not 200 <= resp.status_code < 300:
        issues = body.get("issue") if isinstance(body, dict) else None
        detail = (issues[0].get("diagnostics") if issues and isinstance(issues[0], dict) else None) or resp.reason
        raise error(f"{base} answered {resp.status_code}: {detail}")
    statuses = Counter(str(((e or {}).get("response") or {}).get("status", "?")).split(" ")[0]
                       for e in (body.get("entry") or [] if isinstance(body, dict) else []))
    kinds = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    print(f"loaded {len(bundle['entry'])} resources ({kinds.get('Patient', 0)} patients) into {base}"
          + (f": {', '.join(f'{n} x {s}' for s, n in sorted(statuses.items()))}" if statuses else ""))
    return 0


# -- the parser -------------------------------------------------------------------------------

def add_commands(subparsers: argparse._SubParsersAction, command_error: type[Exception]) -> None:
    """Add ``evaluate``, ``simulate`` and ``load-fixtures``; their user errors raise ``command_error``."""
    p = subparsers.add_parser("evaluate", help="run one patient's hook call and print the cards")
    p.add_argument("bundle", metavar="BUNDLE.json", help="a FHIR Bundle (or resource, or .ndjson) with the Patient")
    p.add_argument("--hook", default="patient-view", help=_HOOK_HELP)
    p.add_argument("--patient", metavar="ID", help="the patient, when the data holds several")
    p.add_argument("--now", metavar="TIME", help="evaluate as of this ISO 8601 date or date-time (default: now)")
    p.add_argument("--orders", metavar="FILE", help="draft orders (Bundle or resource) instead of the data's own")
    p.add_argument("--json", action="store_true", help="print the service's response JSON")
    p.set_defaults(func=partial(_cmd_evaluate, command_error))

    p = subparsers.add_parser("simulate", help="silent mode: evaluate every patient of FHIR files, count cards")
    p.add_argument("paths", nargs="+", metavar="PATH", help="Bundles, NDJSON files, or folders of them")
    p.add_argument("--hook", default="patient-view", help=_HOOK_HELP)
    p.add_argument("--now", metavar="TIME", help="evaluate as of this ISO 8601 date or date-time (default: now)")
    p.add_argument("--orders", metavar="FILE", help="draft orders given to every patient (order hooks)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=partial(_cmd_simulate, command_error))

    p = subparsers.add_parser("load-fixtures", help="PUT the fixture resources to a FHIR server (one transaction)")
    p.add_argument("fhir_base_url", metavar="FHIR_BASE_URL")
    p.add_argument("--dir", action="append", metavar="DIR",
                   help="fixture folder (repeatable; default: fhir_fixtures/ and CDSHOOKS_FIXTURES_DIR)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server (default 120)")
    p.set_defaults(func=partial(_cmd_load_fixtures, command_error))
