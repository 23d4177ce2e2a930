"""Scenario requests: the CDS Hooks request an EHR would send for a scenario, prefetch included.

``build_request()`` plays the CDS client. It sends what the public CDS Hooks sandbox sends
(reference notes 5.3): ``hookInstance``, ``hook``, ``fhirServer`` when one is given, and a
``context`` with ``userId`` and ``patientId``; for the order hooks ``draftOrders`` as a Bundle
**without** ``type`` (as the sandbox does), and for ``order-select`` the ``selections``
(default: every draft order). Prefetch is computed as a client would: each template is
expanded with ``prefetch.expand_template`` (a template with a token that has no value is
left out) and run through ``fhirsearch`` over the patient's record -- the scenario minus its
draft orders. Each value is a ``searchset`` Bundle (the first page, with ``total``; a
``next`` link when ``fhir_server`` is given and more matches remain, which that server must
understand: the dev ``/fhir`` endpoint does); a read template (``Patient/{{context.patientId}}``)
gives the resource, or leaves the key out when there is none.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Iterable

from . import fhirsearch
from .fixtures import Scenario, draft_orders, patients, record_resources, resolve_dates
from .prefetch import expand_template
from .rules import HOOKS

__all__ = ["build_request", "for_scenario", "prefetch_values"]


def _ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def prefetch_values(record: list[dict], templates: dict[str, str], context: dict, user_id: str | None = None,
                    fhir_server: str | None = None) -> dict[str, object]:
    """The prefetch a client would send for ``templates``, computed over ``record``."""
    out: dict[str, object] = {}
    base = fhir_server.rstrip("/") if fhir_server else None
    lookup = {_ref(r): r for r in record if isinstance(r.get("id"), str)}
    for key, template in templates.items():
        query = expand_template(template, context, user_id)
        if query is None:
            continue
        path, sep, params = query.partition("?")
        path = path.strip("/")
        if not sep and "/" in path:
            if path in lookup:
                out[key] = lookup[path]
            continue
        result = fhirsearch.run(record, path, params, lookup=lookup)
        nxt = result.next_offset
        out[key] = fhirsearch.searchset(
            result.matches, result.total,
            f"{base}/{path}?{result.query(nxt)}" if base and nxt is not None else None,
            included=result.included, base_url=base, self_url=f"{base}/{path}?{result.query()}" if base else None,
        )
    return out


def build_request(bundle: dict, hook: str, templates: dict[str, str], *, patient_id: str | None = None,
                  now: datetime | None = None, selections: Iterable[str] | None = None,
                  orders: Iterable[dict] | None = None, user_id: str = "Practitioner/example",
                  hook_instance: str | None = None, fhir_server: str | None = None, prefetch: bool = True) -> dict:
    """A CDS Hooks request for ``hook`` about one patient of ``bundle``.

    ``bundle`` may still hold relative dates (resolved against ``now``, default the current
    time); it may hold several patients, then ``patient_id`` picks one. ``orders`` replaces
    the bundle's draft orders; ``selections`` (``Type/id``) overrides order-select's default,
    and is sent with order-sign only when given (the sandbox's PAMA screen does that).
    With ``prefetch=False`` the request has no ``prefetch`` member.
    """
    if hook not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}; expected one of {', '.join(HOOKS)}")
    now = now or datetime.now(timezone.utc)
    split = patients(resolve_dates(bundle, now))  # type: ignore[arg-type]
    if patient_id is None:
        if len(split) != 1:
            raise ValueError(f"the bundle holds {len(split)} patients; say which with patient_id")
        patient_id = next(iter(split))
    if patient_id not in split:
        raise ValueError(f"the bundle holds no Patient/{patient_id}")
    resources = split[patient_id]
    context: dict = {"userId": user_id, "patientId": patient_id}
    if hook != "patient-view":
        drafts = list(orders) if orders is not None else draft_orders(resources)
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": o} for o in drafts]}
        if selections is not None:
            context["selections"] = list(selections)
        elif hook == "order-select":
            context["selections"] = [_ref(o) for o in drafts if isinstance(o.get("id"), str)]
    request: dict = {"hookInstance": hook_instance or str(uuid.uuid4()), "hook": hook}
    if fhir_server:
        request["fhirServer"] = fhir_server
    request["context"] = context
    if prefetch:
        values = prefetch_values(record_resources(resources), templates, context, user_id, fhir_server)
        if values:
            request["prefetch"] = values
    return request


def for_scenario(scenario: Scenario, templates: dict[str, str], *, now: datetime | None = None,
                 **options) -> dict:
    """``build_request`` for an indexed scenario (its hook, patient and selections)."""
    now = now or datetime.now(timezone.utc)
    return build_request(scenario.bundle(now), scenario.hook, templates, patient_id=scenario.patient, now=now,
                         selections=scenario.selections, **options)
