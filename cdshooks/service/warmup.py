"""Warm-up: synthetic calls that load and touch, before a process's first real call, what it would.

Two steps, both answered quietly (``Engine.quiet``: nothing recorded as issued, logged or counted):

* ``Engine.warm_up()``, in the gunicorn master before it forks (the app is preloaded): one small
  call per hook, so FHIR model classes, validators, value set indexes and the rules' code paths
  are loaded once and shared by every worker;
* ``warm_worker(app)``, in each forked worker before it accepts a connection: one call per hook
  with a realistic record (``WORKER_HISTORY`` lab results) through the whole app (Flask, body
  limits, validation, engine, response). A worker's first call would otherwise write to a few
  hundred memory pages it shares with the master for the first time, each copied then
  (copy-on-write); measured: twice the CPU of later calls on a typical record.

The worker's calls carry the WSGI environ key ``WARM_UP_ENVIRON``, which no client can set (a
server puts request headers under ``HTTP_*`` keys only): they are not authenticated and not in
the request metrics.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from .. import logs
from . import jsoncodec

if TYPE_CHECKING:
    from .engine import Service

__all__ = ["WARM_UP_ENVIRON", "WARM_UP_PATIENT", "WORKER_HISTORY", "warm_serving", "warm_up_resources",
           "warm_up_request", "warm_worker"]

WARM_UP_ENVIRON = "cdshooks.warm_up"
WORKER_HISTORY = 240  # lab results in a worker's warm-up record: about a typical prefetch's


def warm_worker(app, pool: Executor | None = None, threads: int = 1) -> float:
    """Answer one realistic call per hook through ``app`` (quietly); the milliseconds spent. Never raises.

    With ``pool`` (the worker's request threads), the calls run on each of its ``threads`` threads,
    all started now: a call's thread then meets nothing for the first time either (its stack, its
    thread-local state), whichever thread it lands on."""
    state = getattr(app, "extensions", {}).get("cdshooks")
    if state is None:
        return 0.0
    started = time.monotonic()
    try:
        with state.engine.quiet():
            if pool is None or threads <= 1:
                _warm_calls(app, state)
            else:
                together = threading.Barrier(threads)  # each task holds a thread until all are running

                def on_a_thread() -> None:
                    try:
                        together.wait(timeout=_THREAD_START_SECONDS)
                    except threading.BrokenBarrierError:
                        pass  # a thread that did not start in time: the others warm up all the same
                    _warm_calls(app, state)

                for done in [pool.submit(on_a_thread) for _ in range(threads)]:
                    done.result()
    except Exception as exc:  # a worker that could not warm up still serves, only slower at first
        logs.event("service.worker_warm_up_failed", logging.WARNING, error=type(exc).__name__)
    return round((time.monotonic() - started) * 1000, 1)


_THREAD_START_SECONDS = 10


def warm_serving(app, rehearse: Callable[[bytes, dict], bytes]) -> int:
    """One realistic call per hook through the server's own request path (``rehearse``: the gunicorn
    worker's ``BufferingWorker.rehearse``, its socket reading, HTTP parser and response writer
    around the app), quietly; how many were answered 200. Never raises."""
    state = getattr(app, "extensions", {}).get("cdshooks")
    if state is None:
        return 0
    answered = 0
    try:
        with state.engine.quiet():
            for service in state.engine.services.values():
                body = jsoncodec.dumps(warm_up_request(service, WORKER_HISTORY))
                head = (f"POST /cds-services/{service.id} HTTP/1.1\r\nHost: localhost\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
                answered += rehearse(head.encode() + body, {WARM_UP_ENVIRON: True}).startswith(b"HTTP/1.1 200 ")
    except Exception as exc:  # a worker that could not warm up still serves, only slower at first
        logs.event("service.worker_warm_up_failed", logging.WARNING, error=type(exc).__name__)
        return answered
    if answered < len(state.engine.services):
        logs.event("service.worker_warm_up_failed", logging.WARNING, error="not answered",
                   path="server", answered=answered)
    return answered


def _warm_calls(app, state) -> None:
    with app.test_client() as client:
        for service in state.engine.services.values():
            client.post(f"/cds-services/{service.id}", json=warm_up_request(service, WORKER_HISTORY),
                        environ_overrides={WARM_UP_ENVIRON: True})


WARM_UP_PATIENT = "warm-up"


def warm_up_resources(history: int = 0) -> list[dict]:
    """A made-up record on which most rules run and several fire (twitching with weakness, cramps
    in cirrhosis on baclofen, a low potassium), one resource of each type the rules read; with
    ``history``, that many more lab results (potassium, magnesium, calcium, albumin) over ten
    years, as an EHR's prefetch holds them."""
    subject = {"reference": f"Patient/{WARM_UP_PATIENT}"}
    today = datetime.now(timezone.utc)
    day = today.date().isoformat()
    old = (today.replace(year=today.year - 1)).date().isoformat()

    sct, icd, loinc = "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm", "http://loinc.org"
    labs = [("2823-3", 4.1, "mmol/L"), ("19123-9", 2.0, "mg/dL"), ("17861-6", 9.4, "mg/dL"), ("1751-7", 4.0, "g/dL")]
    past = [_lab(i, subject, today, *labs[i % len(labs)]) for i in range(history)]
    problems = [(sct, "82470000"), (icd, "M62.81"), (icd, "R25.2"), (icd, "K74.60"), (icd, "M79.651")]
    # each problem in three of the shapes problem lists commonly come in (see _condition)
    conditions = [_condition(f"w{k + 1}{suffix}", subject, old, system, code, (k + shift) % len(_CONDITION_SHAPES))
                  for shift, suffix in ((0, ""), (2, "b"), (4, "c")) for k, (system, code) in enumerate(problems)]
    return past + conditions + [
        {"resourceType": "Observation", "id": "w6", "status": "final", "subject": subject, "effectiveDateTime": day,
         "code": {"coding": [{"system": loinc, "code": "2823-3"}]},
         "valueQuantity": {"value": 3.0, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}},
        {"resourceType": "MedicationRequest", "id": "w7", "status": "active", "intent": "order", "subject": subject,
         "authoredOn": old, "medicationCodeableConcept": {"text": "baclofen 10 mg oral tablet"},
         "dosageInstruction": [{"text": "10 mg twice daily", "timing": {"repeat": {"frequency": 2, "period": 1,
                                                                                  "periodUnit": "d"}},
                                "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg"}}]}]},
        {"resourceType": "MedicationStatement", "id": "w8", "status": "active", "subject": subject,
         "medicationCodeableConcept": {"text": "magnesium oxide 400 mg oral tablet"}},
        {"resourceType": "Medication", "id": "w9", "code": {"text": "baclofen 10 mg oral tablet"}},
        {"resourceType": "ServiceRequest", "id": "w10", "status": "completed", "intent": "order", "subject": subject,
         "authoredOn": old, "code": {"coding": [{"system": sct, "code": "42803009"}]}},
        {"resourceType": "Procedure", "id": "w11", "status": "completed", "subject": subject, "performedDateTime": old,
         "code": {"coding": [{"system": sct, "code": "42803009"}]}},
        {"resourceType": "DiagnosticReport", "id": "w12", "status": "final", "subject": subject,
         "effectiveDateTime": old, "code": {"coding": [{"system": sct, "code": "42803009"}]},
         "conclusion": "Normal study"},
    ]


_CONDITION_SHAPES = ("bare", "display", "unstated", "unstated-display", "us-core", "export")


def _condition(rid: str, subject: dict, onset: str, system: str, code: str, shape: int) -> dict:
    """A problem-list Condition in one of the shapes EHRs and servers send (``_CONDITION_SHAPES``):
    a minimal feed's, with or without a clinical status and with or without the code's display;
    US Core's, with verification status, category, text and displays throughout; a bulk export's,
    with meta, encounter and recorded date. (The reader learns each shape once, in any element
    order: see fhir/models.py.)"""
    kind = _CONDITION_SHAPES[shape]
    clinical = {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
    coding = {"system": system, "code": code}
    if kind not in ("bare", "unstated"):
        coding["display"] = f"problem {code}"
    out: dict = {"resourceType": "Condition", "id": rid}
    if kind == "export":
        out["meta"] = {"lastUpdated": f"{onset}T00:00:00+00:00"}
    if not kind.startswith("unstated"):
        out["clinicalStatus"] = {"coding": [dict(clinical, display="Active") if kind == "us-core" else clinical]}
    if kind in ("us-core", "export"):
        out["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}
        out["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                        "code": "problem-list-item", "display": "Problem List Item"}]}]
    out["code"] = {"coding": [coding], "text": f"problem {code}"} if kind in ("us-core", "export") else {
        "coding": [coding]}
    out["subject"] = subject
    if kind == "export":
        out["encounter"] = {"reference": "Encounter/warm-up"}
    out["onsetDateTime"] = onset
    if kind in ("us-core", "export"):
        out["recordedDate"] = onset
    return out


def _lab(i: int, subject: dict, today: datetime, code: str, value: float, unit: str) -> dict:
    """A lab result in the element order FHIR servers write, in one of the shapes they commonly send:
    bare; as a bulk export carries it (meta, display and text, encounter, issued); with an
    interpretation and a reference range. (The reader learns each shape once: see fhir/models.py.)"""
    quantity = {"value": round(value * (0.9 + 0.2 * ((i * 7) % 11) / 10), 2), "unit": unit,
                "system": "http://unitsofmeasure.org", "code": unit}
    when = (today - timedelta(days=3 + 15 * (i // 4))).isoformat(timespec="seconds")
    category = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                             "code": "laboratory"}]}]
    obs: dict = {"resourceType": "Observation", "id": f"wh{i}"}
    variant = (i // 4) % 3
    if variant == 1:
        obs["meta"] = {"lastUpdated": when}
    obs["status"] = "final"
    obs["category"] = category
    obs["code"] = {"coding": [{"system": "http://loinc.org", "code": code}]}
    if variant == 1:
        category[0]["coding"][0]["display"] = "Laboratory"
        obs["code"]["coding"][0]["display"] = obs["code"]["text"] = f"lab {code}"
    obs["subject"] = subject
    if variant == 1:
        obs["encounter"] = {"reference": f"Encounter/warm-up-{i // 8}"}
    obs["effectiveDateTime"] = when
    if variant == 1:
        obs["issued"] = when
    obs["valueQuantity"] = quantity
    if variant == 2:
        obs["interpretation"] = [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}]
        obs["referenceRange"] = [{"low": dict(quantity, value=round(value * 0.8, 2)),
                                  "high": dict(quantity, value=round(value * 1.2, 2))}]
    return obs


def warm_up_request(service: Service, history: int = 0) -> dict:
    """A full-prefetch request of ``service``'s hook over the warm-up record (draft orders for the order hooks)."""
    resources = warm_up_resources(history)
    prefetch: dict[str, object] = {}
    filled: set[str] = set()
    for key, template in sorted(service.prefetch.items()):
        rtype = template.split("?", 1)[0]
        mine = [r for r in resources if r["resourceType"] == rtype or (rtype == "MedicationRequest"
                                                                       and r["resourceType"] == "Medication")]
        entries = [] if rtype in filled else [{"resource": r} for r in mine]
        filled.add(rtype)
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    context: dict[str, object] = {"userId": "Practitioner/warm-up", "patientId": WARM_UP_PATIENT}
    if service.hook != "patient-view":
        subject = {"reference": f"Patient/{WARM_UP_PATIENT}"}
        drafts: list[dict] = [
            {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order", "subject": subject,
             "medicationCodeableConcept": {"text": "baclofen 20 mg oral tablet"},
             "dosageInstruction": [{"text": "20 mg three times daily"}]},
            {"resourceType": "MedicationRequest", "id": "d2", "status": "draft", "intent": "order", "subject": subject,
             "medicationCodeableConcept": {"text": "quinidine sulfate 200 mg oral tablet"}},
            {"resourceType": "ServiceRequest", "id": "d3", "status": "draft", "intent": "order", "subject": subject,
             "code": {"text": "Phrenic nerve conduction study"}},
        ]
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": d} for d in drafts]}
        if service.hook == "order-select":
            context["selections"] = [f"{d['resourceType']}/{d['id']}" for d in drafts]
    return {"hook": service.hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
