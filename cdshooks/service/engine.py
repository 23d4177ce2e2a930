"""Engine: one hook call, from a validated request to the response's cards.

    services()  one CDS service per hook, its prefetch built from its rules' reads
    warm_up()   at start-up, one synthetic call per hook (service/warmup.py): nothing is loaded on a
                worker's first call; quiet() keeps such calls out of the store, logs and metrics
    answer()    validate -> gather data (prefetch, else fhirServer) -> Record -> run each
                rule in isolation -> de-duplicate orders across cards -> sort, stamp uuids
                -> record issued cards -> {"cards": [...]}
    outcome()   the same call, also saying which rules raised (``Outcome``)
    evaluate()  one patient's resources as of an instant, no HTTP: the request an EHR would
                send (prefetch computed from the resources by the service's own templates,
                draft orders for the order hooks) answered by ``outcome()``. The CLI and the
                population runners use it, so a silent run and a hook call cannot disagree.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from typing import Callable, Iterable, Iterator

from .. import logs, metrics
from ..cards.card import INDICATORS, TOPIC_SYSTEM, Card
from ..cards.registry import HOOKS, Call, Rule, rules_for
from ..config import Settings
from ..fhir.client import FhirClient, base_url_problem
from ..fhir.record import Record, flatten, untyped_entries
from ..store import IssuedCard, Store
from . import prefetch
from .errors import DataUnobtainable, DeadlineExceeded, InvalidRequest, TooLarge, UnknownService
from .validation import compiled, validate, validator

__all__ = ["Service", "Engine", "Outcome", "SERVICE_IDS", "FailureCounter", "INCOMPLETE_CHECKS_ID"]

SERVICE_IDS = {hook: f"fasciculation-{hook}" for hook in HOOKS}

_DESCRIPTIONS = {
    "patient-view": "When a chart opens: flags fasciculations that need urgent neurology (weakness, respiratory "
                    "involvement), EMG, electrolytes, drug causes (irinotecan interactions), nerve hyperexcitability, "
                    "cirrhosis cramps and hamstring twitching work-up.",
    "order-select": "While orders are chosen: checks baclofen and quinidine doses against the cramp guideline, "
                    "irinotecan CYP3A4/UGT1A1 interactions, phrenic nerve test timing, and EMG orders that must not "
                    "delay an urgent neurology referral.",
    "order-sign": "Before orders are signed: the same checks as order-select, over every draft order.",
}

_USAGE = ("FHIR R4. Send the prefetch this service declares, or a fhirServer the service is allowed to call "
          "(with fhirAuthorization when the server needs it). Requests are authenticated with a signed JWT "
          "(CDS Hooks 2.0 'Trusting CDS Clients').")


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    rules: tuple[Rule, ...]
    prefetch: dict[str, str] = field(default_factory=dict)

    def discovery(self) -> dict:
        entry: dict[str, object] = {"id": self.id, "hook": self.hook, "title": self.title,
                                    "description": self.description, "usageRequirements": _USAGE}
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        return entry


@dataclass
class Outcome:
    """One call's answer: the cards (as sent) and the ids of the rules that raised and gave no card."""

    cards: list[dict]
    failed: list[str] = field(default_factory=list)

    def body(self) -> dict:
        return {"cards": self.cards}


# The card that says some checks could not be completed (topic code; no rule has this id).
INCOMPLETE_CHECKS_ID = "checks-incomplete"


class FailureCounter:
    """Rule failures since start-up, per rule id (thread-safe); also counted in ``cdshooks_rule_failures_total``."""

    def __init__(self, exported: bool = True) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._exported = exported  # False for the start-up warm-up's calls

    def add(self, rule_id: str) -> None:
        with self._lock:
            self._counts[rule_id] = self._counts.get(rule_id, 0) + 1
        if self._exported:
            metrics.RULE_FAILURES.labels(rule_id).inc()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


def _incomplete_checks_card(titles: list[str]) -> Card:
    """One info card saying which checks could not be completed; it names rules, never patient data."""
    detail = ("Some of this service's checks could not be completed for this patient, so the absence of a card "
              "from them says nothing: " + "; ".join(sorted(set(titles))) + ". The other checks ran normally.")
    card = Card(summary="Some checks could not be completed for this patient", indicator="info", detail=detail)
    card.rule_id = INCOMPLETE_CHECKS_ID
    card.source = {"label": "Muscle twitching (fasciculations) CDS service",
                   "topic": {"system": TOPIC_SYSTEM, "code": INCOMPLETE_CHECKS_ID,
                             "display": "Checks that could not be completed"}}
    return card


def _aware_now(now: datetime | None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


class Engine:
    # Skip a rule whose triggers (``@rule(triggers=...)``) are absent from the record: it cannot
    # fire. Off only to prove, in the tests, that skipping never changes an answer.
    skip_untriggered = True
    _warming = False  # answering the start-up warm-up's synthetic calls

    def __init__(self, settings: Settings, store: Store | None):
        self.settings = settings
        self.store = store
        self.rule_failures = FailureCounter()
        self.services: dict[str, Service] = {}
        for hook in HOOKS:
            rules = tuple(rules_for(hook, settings.rules.disabled))
            self.services[SERVICE_IDS[hook]] = Service(
                id=SERVICE_IDS[hook], hook=hook, title=f"Muscle twitching (fasciculations): {hook}",
                description=_DESCRIPTIONS[hook], rules=rules, prefetch=prefetch.templates_for(rules))

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Calls answered inside are no patient's (the warm-ups): their cards are not recorded as
        issued, nothing is logged, and neither they nor their rule failures reach the metrics."""
        store, self.store = self.store, None
        failures, self.rule_failures = self.rule_failures, FailureCounter(exported=False)
        self._warming = True
        disabled, logs.logger.disabled = logs.logger.disabled, True
        try:
            yield
        finally:
            self.store, self.rule_failures, self._warming = store, failures, False
            logs.logger.disabled = disabled

    def warm_up(self) -> float:
        """Answer one synthetic call per hook, quietly (``quiet``), so that what a first call would
        load (FHIR model classes, schema validators, value set indexes, date parsing, the rules'
        code paths) is loaded at start-up; returns the milliseconds spent. A failure is logged
        and start-up goes on: the calls themselves would only be slower."""
        started = time.monotonic()
        from ..fhir import models
        from .warmup import warm_up_request, warm_up_resources

        try:
            with self.quiet():
                models.preload(sorted({r["resourceType"] for r in warm_up_resources()} | {"Bundle"}))
                for resource in warm_up_resources():
                    models.parse(resource)
                for service in self.services.values():
                    self.answer(service.id, warm_up_request(service, history=24))  # every lab shape of warmup.py
                compiled("feedback"), validator("feedback")
        except Exception as exc:  # never stop start-up: the service still answers, only slower at first
            logs.event("service.warm_up_failed", logging.WARNING, error=type(exc).__name__)
        return round((time.monotonic() - started) * 1000, 1)

    def service(self, service_id: str) -> Service:
        try:
            return self.services[service_id]
        except KeyError:
            raise UnknownService(f"Unknown CDS service {service_id!r}") from None

    # -- the call -------------------------------------------------------------------
    def validate(self, service: Service, body: object) -> dict:
        validate(body, "hook-request")
        assert isinstance(body, dict)
        if body["hook"] != service.hook:
            raise InvalidRequest(f"hook must be {service.hook!r} for service {service.id!r}", expression=["hook"])
        self._check_draft_count(body["context"])
        validate(body["context"], f"context-{service.hook}", prefix="context")
        server = body.get("fhirServer")
        problem = base_url_problem(server) if isinstance(server, str) else None
        if problem:
            raise InvalidRequest(f"fhirServer {problem}", expression=["fhirServer"])
        return body

    def _check_draft_count(self, context: object) -> None:
        """413 for more draft orders than ``max_draft_orders``, before anything else reads them."""
        drafts = context.get("draftOrders") if isinstance(context, dict) else None
        cap = self.settings.max_draft_orders
        if isinstance(drafts, dict) and sum(1 for _ in islice(flatten(drafts), cap + 1)) > cap:
            raise TooLarge(f"At most {cap} draft orders are accepted in one call", expression=["context.draftOrders"])

    def answer(self, service_id: str, body: object, now: datetime | None = None,
               deadline: float | None = None, cutoff: float | None = None,
               defer: Callable[[Callable[[], None]], object] | None = None) -> dict:
        return self.outcome(service_id, body, now, deadline, cutoff, defer=defer).body()

    def evaluate(self, hook: str, resources: Iterable[dict], now: datetime, *, patient_id: str | None = None,
                 draft_orders: Iterable[dict] | None = None, selections: Iterable[str] | None = None) -> Outcome:
        """``hook`` for one patient's ``resources`` (dates already resolved) as of ``now``, without HTTP.

        The request is the one an EHR would send: the prefetch is what the service's templates
        select from ``resources`` (by code, status, sort and count), ``draft_orders`` go in
        ``context.draftOrders`` (order hooks; ``selections`` default to all of them for
        order-select). ``patient_id`` defaults to the first Patient's. Raises ``ValueError``
        when there is no patient and ``InvalidRequest`` as a hook call would.
        """
        from .hook_request import request_for

        service = self.service(SERVICE_IDS[hook]) if hook in SERVICE_IDS else self.service(hook)
        resources = list(resources)
        request = request_for(resources, service.hook, service.prefetch, now=now, patient_id=patient_id,
                              orders=draft_orders, selections=selections)
        return self.outcome(service.id, request, now, cutoff=math.inf)  # off-line: no request deadline

    def outcome(self, service_id: str, body: object, now: datetime | None = None,
                deadline: float | None = None, cutoff: float | None = None, *, record_issued: bool = True,
                defer: Callable[[Callable[[], None]], object] | None = None) -> Outcome:
        """``answer()``'s call, returning the cards with the rules that raised. ``deadline``: when
        fetching stops (412 past it; default: the call budget); ``cutoff``: when the whole call must
        have answered (503 past it; default: ``request_deadline`` from now). Nothing is recorded for a
        call that ends past its cutoff, nor with ``record_issued=False`` (the playground's tries: their cards
        are never shown to a clinician, so they are not issued). The call's report (its log lines and
        metrics) is handed to ``defer`` when given (the HTTP endpoint runs it once the answer is sent),
        else made at once. The issued-card record is queued before the answer either way, so feedback
        on a card always finds it."""
        started = time.monotonic()
        cutoff = cutoff or started + self.settings.request_deadline
        service = self.service(service_id)
        request = self.validate(service, body)
        deadline = min(deadline or started + self.settings.call_budget, cutoff)
        now = _aware_now(now)
        hook_instance = request["hookInstance"]
        context = request["context"]
        patient_id = context["patientId"]

        client = FhirClient.for_request(request, self.settings)
        try:
            gathered = prefetch.gather(service.prefetch, request, self.settings, client, deadline)
        except prefetch.DataUnavailable as exc:
            logs.event("hook.unobtainable", hook=service.hook, hook_instance=hook_instance, keys=exc.keys,
                       reason=exc.reason)
            raise DataUnobtainable(f"Required data could not be obtained ({exc.reason}): {', '.join(exc.keys)}",
                                   expression=[f"prefetch.{k}" for k in exc.keys]) from None
        t_gathered = time.monotonic()

        record = Record.from_prefetch(patient_id, gathered.values.values(), now)
        record.mark_incomplete(*gathered.incomplete_types)
        drafts, orders = self._orders(service.hook, context)
        if service.hook != "patient-view":
            # a draft whose resourceType cannot be read could be any order: no absence can be stated beside it
            record.untyped += untyped_entries(context.get("draftOrders"))
        # drafts are read like any record data: faulty elements repaired or dropped, so that an
        # update a card suggests starts from valid R4
        read = {id(d): record.read(d) for d in drafts}
        drafts, orders = [read[id(d)] for d in drafts], [read[id(o)] for o in orders]
        for draft in drafts:
            if draft.get("resourceType") == "Medication":
                record.ingest(draft)
        t_record = time.monotonic()
        call = Call(hook=service.hook, now=now, record=record, settings=self.settings.rules,
                    orders=orders, draft_orders=[r for r in drafts if r.get("resourceType") != "Medication"])

        _in_time(cutoff)
        cards, failed = self._run(service, call, hook_instance, cutoff)
        _strict_outbound(cards, hook_instance)
        if failed and self.settings.rule_failure_card:
            cards.append(_incomplete_checks_card([r.title for r in service.rules if r.id in failed]))
        cards = _sorted(_dedupe_orders(cards))
        t_rules = time.monotonic()
        _in_time(cutoff)
        issued = []
        fresh = _uuids(len(cards) + sum(len(c.suggestions) for c in cards))
        for card in cards:
            card.uuid = next(fresh)
            for s in card.suggestions:
                s.uuid = next(fresh)
            suggestion_ids = [s.uuid for s in card.suggestions if s.uuid]
            issued.append(IssuedCard(card.uuid, card.rule_id or "", card.indicator, suggestion_ids))
        if self.store is not None and record_issued:
            self.store.record_issued(service.id, hook_instance, issued)
        finished = time.monotonic()

        answer = Outcome([c.to_json() for c in cards], failed)
        if self._warming:  # the start-up warm-up's calls are no patient's: neither logged nor in the metrics
            return answer
        fired = [(c.rule_id or "", c.indicator) for c in cards]

        def report() -> None:
            # The record is read here, after the answer when deferred: it stays alive until then, so
            # freeing it (its indexes and readings) is not on the answer's path either.
            def ms(a: float, b: float) -> float:
                return round((b - a) * 1000, 2)

            resources, invalid, other_patient, problems = (record.count(), record.invalid, record.other_patient,
                                                           record.problems[:50])
            logs.event(
                "hook.answered", hook=service.hook, hook_instance=hook_instance,
                rules_fired=sorted({rule for rule, _ in fired if rule}), rules_failed=failed, cards=len(fired),
                resources=resources, invalid_resources=invalid, other_patient_resources=other_patient,
                incomplete_keys=sorted(gathered.incomplete), fetched_keys=gathered.fetched,
                ms_data=ms(started, t_gathered), ms_fetch=round(gathered.fetch_ms, 2),
                ms_record=ms(t_gathered, t_record), ms_rules=ms(t_record, t_rules), ms_store=ms(t_rules, finished),
                ms_total=ms(started, finished),
            )
            metrics.hook_answered(service.id, {
                "data": t_gathered - started, "fetch": gathered.fetch_ms / 1000, "record": t_record - t_gathered,
                "rules": t_rules - t_record, "store": finished - t_rules, "total": finished - started,
            }, fired)
            if problems:
                logs.event("record.repaired", hook_instance=hook_instance, resources=invalid, problems=problems)

        if defer is None:
            report()
        else:
            defer(logs.keeping_request_id(report))
        return answer

    def _orders(self, hook: str, context: dict) -> tuple[list[dict], list[dict]]:
        """(every draft order resource, the orders the rules judge)."""
        if hook == "patient-view":
            return [], []
        drafts = list(flatten(context.get("draftOrders")))
        if hook == "order-sign":
            return drafts, drafts
        selected = set(context.get("selections") or [])
        chosen = [r for r in drafts if f"{r.get('resourceType')}/{r.get('id')}" in selected]
        return drafts, chosen

    def _run(self, service: Service, call: Call, hook_instance: str,
             cutoff: float | None = None) -> tuple[list[Card], list[str]]:
        cards: list[Card] = []
        failed: list[str] = []
        skip = self.skip_untriggered
        for rule in service.rules:
            if cutoff is not None:
                _in_time(cutoff)
            if skip and rule.triggers and not rule.triggered(call.record):
                continue
            try:
                produced = rule.run(call)
            except Exception as exc:  # one rule's failure never sinks the others
                if self.settings.strict_rules:
                    raise
                failed.append(rule.id)
                self.rule_failures.add(rule.id)
                logs.event("rule.failed", logging.ERROR, rule=rule.id, hook_instance=hook_instance,
                           error=type(exc).__name__)
                continue
            if produced:
                call._fired.add(rule.id)
            for card in produced:
                card.rule_id = rule.id
                card.source = {
                    "label": rule.source.label,
                    "url": rule.source.url,
                    "topic": {"system": TOPIC_SYSTEM, "code": rule.id, "display": rule.title},
                }
                if not card.source["url"]:
                    del card.source["url"]
                cards.append(card)
        return cards, failed


def _strict_outbound(cards: list[Card], hook_instance: str) -> None:
    """Drop any suggestion whose ``update`` resource is not strictly valid FHIR R4 (logged by rule,
    resource type and element path, never values): what this service writes must be valid as it is.

    An update starts from the client's draft (read tolerantly, so repaired), which may still lack
    something R4 requires. ``create`` resources come from this service's own builders and are
    checked against R4 on every response of the test suite, so they are not validated per call."""
    from ..fhir.models import invalid_paths

    for card in cards:
        kept = []
        for suggestion in card.suggestions:
            bad = [(a.resource.get("resourceType"), invalid_paths(a.resource)) for a in suggestion.actions
                   if a.type == "update" and isinstance(a.resource, dict)]
            bad = [(rtype, paths) for rtype, paths in bad if paths]
            if bad:
                logs.event("suggestion.invalid", logging.ERROR, rule=card.rule_id, hook_instance=hook_instance,
                           resource_type=str(bad[0][0]), paths=bad[0][1][:10])
                continue
            kept.append(suggestion)
        card.suggestions = kept


def _uuids(count: int) -> Iterator[str]:
    """``count`` time-ordered (version 7, RFC 9562) UUIDs: the current Unix time in milliseconds, then
    74 random bits from the OS's random bytes, read 4 KiB at a time per thread.

    Time-ordered, so the issued-card records' key index grows at its end: a batch of rows touches a
    few pages of it rather than one page per row, and that stays so as the table grows (measured:
    7 µs a row written against 14-17 µs with random keys, on an empty table). The random bits keep
    them unguessable. Not a system call per answer: a call that lets go of the interpreter lets the
    worker's other threads (its event loop, the issued-card writer) cut in for their turn, tens of
    microseconds spent inside the answer (measured: 40 µs for ``os.urandom``, against 4 µs without them)."""
    raw = getattr(_random, "pool", b"")
    if len(raw) < _RANDOM_BYTES * count:
        raw = os.urandom(max(4096, _RANDOM_BYTES * count))
    _random.pool = raw[_RANDOM_BYTES * count:]
    head = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80 | _VERSION_7
    ids = []
    for i in range(0, _RANDOM_BYTES * count, _RANDOM_BYTES):
        bits = int.from_bytes(raw[i:i + _RANDOM_BYTES], "big")
        h = f"{head | (bits >> 68) << 64 | bits & _RAND_B:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return iter(ids)


_RANDOM_BYTES = 10                        # 80 bits read for the 74 a version 7 UUID holds
_VERSION_7 = 0x7 << 76 | 0b10 << 62       # the version and the RFC 9562 variant
_RAND_B = (1 << 62) - 1
_random = threading.local()  # each thread's unread random bytes
# A forked worker must never hand out the bytes its master had left over (the same uuids twice).
os.register_at_fork(after_in_child=lambda: _random.__dict__.clear())


def _in_time(cutoff: float) -> None:
    """503 once the call's cutoff has passed: an answer late enough to meet the worker timeout is no answer."""
    if time.monotonic() > cutoff:
        logs.event("hook.deadline", logging.WARNING)
        raise DeadlineExceeded("The call could not be answered in time; try again")


def _sorted(cards: list[Card]) -> list[Card]:
    """Most urgent first; cards of equal urgency by rule id, so answers are deterministic."""
    return sorted(cards, key=lambda c: (INDICATORS.index(c.indicator), c.rule_id or ""))


def _dedupe_orders(cards: list[Card]) -> list[Card]:
    """An order suggested by several cards stays on the most urgent one; the others refer to it.

    An order that another card's order already includes (``orders.covers``: needle EMG with nerve
    conduction studies includes the nerve conduction studies) is dropped the same way.
    """
    from ..cards.orders import covers, describe, order_key

    created = [(card, a.resource) for card in cards for s in card.suggestions for a in s.actions
               if a.type == "create" and a.resource]
    offered: dict[tuple, Card] = {}
    for card in _sorted(cards):
        kept = []
        for suggestion in card.suggestions:
            keys = [order_key(a.resource) for a in suggestion.actions if a.type == "create" and a.resource]
            owner = next((offered[k] for k in keys if k in offered), None)
            resources = [a.resource for a in suggestion.actions if a.type == "create" and a.resource]
            if owner is None and resources:
                owner = next((other for other, res in created if other is not card
                              and all(covers(res, mine) for mine in resources)), None)
            if owner is not None and owner is not card:
                names = ", ".join(describe(a.resource) for a in suggestion.actions if a.resource)
                card.detail += f"\n\nThe {names} order is offered on the card \u201c{owner.summary}\u201d."
                continue
            for k in keys:
                offered.setdefault(k, card)
            kept.append(suggestion)
        card.suggestions = kept
    return cards
