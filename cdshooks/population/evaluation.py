"""One patient's silent-mode evaluation: the calls a hook would get, answered by ``Engine.evaluate``.

``Evaluator.patient()`` takes one patient's resources (dates resolved) and gives one result per
hook call, as plain JSON-ready dicts, so the local runner and the Spark workers produce the same
rows:

* ``patient-view``: one call as of the run's instant;
* ``order-select`` / ``order-sign`` with given orders (``--orders``): one call with them as the
  draft orders; without: the data's own draft orders, or the patient is skipped;
* order hooks **replayed from history** (``replay=True``): each historical MedicationRequest and
  ServiceRequest with an ``authoredOn`` becomes a draft order at that instant, evaluated
  against the record as it stood then: every resource dated after the instant is left out (and
  so is the order itself). Undated resources (the Patient, Medications) stay. Statuses are the
  ones the data carries now: a condition resolved later still reads as resolved.

A result: ``{"patient", "at", "status": "answered" | "skipped" | "error", "reason", "failed"
(rule ids that raised), "ms", "order" (replay: the replayed order), "cards": [{"rule",
"indicator", "summary", "suggestedOrders": [...]}]}``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Iterable

from .. import logs
from ..config import Settings
from ..fhir.bundles import REQUEST_TYPES, draft_orders, instant, is_draft_order
from ..service.engine import SERVICE_IDS, Engine
from ..service.errors import ServiceError

__all__ = ["Evaluator", "compact_card", "resource_instant", "REPLAYED_TYPES", "wanted_types"]

# The historical orders replayed as drafts in the order hooks.
REPLAYED_TYPES = ("MedicationRequest", "ServiceRequest")

# Where a resource's clinical date sits, first found wins.
_DATE_FIELDS = ("authoredOn", "effectiveDateTime", "issued", "recordedDate", "onsetDateTime", "performedDateTime",
                "dateAsserted", "occurrenceDateTime", "date")
_PERIOD_FIELDS = ("effectivePeriod", "performedPeriod", "onsetPeriod", "occurrencePeriod")


def _parse_instant(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value.strip()
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def resource_instant(resource: dict) -> datetime | None:
    """The instant a resource is dated at (authored, effective, recorded, performed...), or None when undated."""
    for name in _DATE_FIELDS:
        if name in resource:
            moment = _parse_instant(resource[name])
            if moment is not None:
                return moment
    for name in _PERIOD_FIELDS:
        period = resource.get(name)
        if isinstance(period, dict):
            moment = _parse_instant(period.get("start"))
            if moment is not None:
                return moment
    return None


def wanted_types(engine: Engine, hook: str) -> frozenset[str]:
    """The resource types a hook's calls can use: those its prefetch searches, the Patient, Medications
    (``_include``d by medication searches) and, for the order hooks, the request types (draft orders)."""
    found = {t.partition("?")[0].split("/")[0] for t in engine.services[SERVICE_IDS[hook]].prefetch.values()}
    found |= {"Patient", "Medication"}
    if hook != "patient-view":
        found |= REQUEST_TYPES
    return frozenset(found)


def _codings(resource: dict) -> list[dict]:
    concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    return [{k: c[k] for k in ("system", "code", "display") if k in c}
            for c in (concept.get("coding") or []) if isinstance(c, dict)]


def compact_card(card: dict) -> dict:
    """What a review needs of a card: rule, indicator, summary and the orders it suggests."""
    orders = []
    for suggestion in card.get("suggestions") or []:
        for action in suggestion.get("actions") or []:
            resource = action.get("resource") if isinstance(action.get("resource"), dict) else None
            item: dict = {"label": suggestion.get("label", ""), "action": action.get("type")}
            if resource is not None:
                item["resourceType"] = resource.get("resourceType")
                item["codings"] = _codings(resource)
                text = (resource.get("code") or resource.get("medicationCodeableConcept") or {}).get("text")
                if text:
                    item["text"] = text
            if action.get("resourceId"):
                item["resourceId"] = action["resourceId"]
            orders.append(item)
    return {"rule": ((card.get("source") or {}).get("topic") or {}).get("code") or "?",
            "indicator": card.get("indicator"), "summary": card.get("summary"), "suggestedOrders": orders}


def _owned(order: dict, patient_id: str) -> dict:
    order = dict(order)
    rtype = order.get("resourceType")
    if rtype in REQUEST_TYPES:
        if rtype != "SupplyRequest":
            order["patient" if rtype in ("NutritionOrder", "VisionPrescription") else "subject"] = {
                "reference": f"Patient/{patient_id}"}
        order.setdefault("status", "draft")
    return order


class Evaluator:
    """The service's engine (no store, no HTTP) evaluating patients for one hook as of one instant.

    Settings come from the ``CDSHOOKS_*`` environment (rule windows, disabled rules) with
    authentication off. The engine's log lines are silenced: each result carries the rules that
    raised, and no patient data is ever logged.
    """

    def __init__(self, hook: str, now: datetime, *, orders: list[dict] | None = None, replay: bool = False,
                 settings: Settings | None = None):
        self.hook, self.now, self.orders, self.replay = hook, now, orders, replay
        settings = settings or Settings.from_env(auth="off", database_url="sqlite://", log_level="ERROR")
        self.engine = Engine(settings, None)
        self.rule_ids = [r.id for r in self.engine.services[SERVICE_IDS[hook]].rules]
        self.wanted = wanted_types(self.engine, hook)
        # the first call loads value sets and models: done here, so per-call timings are steady-state
        self.engine.evaluate("patient-view", [{"resourceType": "Patient", "id": "warm-up"}], now)

    def patient(self, patient_id: str, resources: list[dict]) -> list[dict]:
        """The results of one patient's calls (see the module docstring)."""
        level = logs.logger.level
        logs.logger.setLevel(logging.CRITICAL + 1)
        try:
            if self.hook == "patient-view":
                return [self._call(patient_id, resources, self.now, None)]
            if self.replay:
                return self._replay(patient_id, resources)
            drafts = ([_owned(o, patient_id) for o in self.orders] if self.orders is not None
                      else draft_orders(resources))
            if not drafts:
                return [self._skipped(patient_id, self.now, "no draft orders")]
            return [self._call(patient_id, resources, self.now, drafts)]
        finally:
            logs.logger.setLevel(level)

    def _replay(self, patient_id: str, resources: list[dict]) -> list[dict]:
        dated = [(r, resource_instant(r)) for r in resources]
        by_ref = {f"Medication/{r.get('id')}": r for r in resources if r.get("resourceType") == "Medication"}
        history = sorted(((r, at) for r, at in dated
                          if r.get("resourceType") in REPLAYED_TYPES and at is not None
                          and r.get("status") != "entered-in-error" and r.get("authoredOn") is not None
                          and not is_draft_order(r)), key=lambda pair: pair[1])
        if not history:
            return [self._skipped(patient_id, self.now, "no orders with authoredOn in the history")]
        out = []
        for order, at in history:
            before = [r for r, when in dated if r is not order and (when is None or when <= at)]
            draft = {**order, "status": "draft"}
            drafts: list[dict] = [draft]
            ref = (order.get("medicationReference") or {}).get("reference")
            if isinstance(ref, str) and ref in by_ref:
                drafts.append(by_ref[ref])
            result = self._call(patient_id, before, at, drafts)
            result["order"] = f"{order.get('resourceType')}/{order.get('id')}"
            out.append(result)
        return out

    def _skipped(self, patient_id: str, at: datetime, reason: str) -> dict:
        return {"patient": patient_id, "at": instant(at), "status": "skipped", "reason": reason, "failed": [],
                "ms": 0.0, "cards": []}

    def _call(self, patient_id: str, resources: Iterable[dict], at: datetime, drafts: list[dict] | None) -> dict:
        began = time.perf_counter()
        result: dict = {"patient": patient_id, "at": instant(at), "status": "answered", "reason": None,
                        "failed": [], "cards": []}
        try:
            outcome = self.engine.evaluate(self.hook, list(resources), at, patient_id=patient_id,
                                           draft_orders=drafts)
        except ServiceError as exc:
            result.update(status="error", reason=f"the service answered {exc.status}: {exc}")
        except Exception as exc:  # one patient never sinks the run
            result.update(status="error", reason=f"internal error ({type(exc).__name__})")
        else:
            result["failed"] = list(outcome.failed)
            result["cards"] = [compact_card(c) for c in outcome.cards]
        result["ms"] = round((time.perf_counter() - began) * 1000, 3)
        return result
