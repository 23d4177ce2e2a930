"""Hook requests built from FHIR data: the CDS Hooks request an EHR would send for a patient, prefetch included.

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

``hook_request()`` builds one from user-supplied data (a Bundle, resource or list; the
CLI and the playground use it), raising ``InputError`` with a message meant for the user.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from ..cards.registry import HOOKS
from ..fhir import search as fhirsearch
from ..fhir.bundles import REQUEST_TYPES, draft_orders, patients, record_resources, resolve_dates
from .prefetch import expand_template

__all__ = ["read_inputs", "Inputs", "reading", "describe_reading",
           "build_request", "request_for", "prefetch_values", "hook_request", "check_hook", "parse_now", "read_fhir",
           "order_resources", "check_fhir", "InputError", "SeveralPatients", "NoDraftOrders"]


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
    split = patients(resolve_dates(bundle, now))
    if patient_id is None:
        if len(split) != 1:
            raise ValueError(f"the bundle holds {len(split)} patients; say which with patient_id")
        patient_id = next(iter(split))
    if patient_id not in split:
        raise ValueError(f"the bundle holds no Patient/{patient_id}")
    return request_for(split[patient_id], hook, templates, now=now, patient_id=patient_id, orders=orders,
                       selections=selections, user_id=user_id, hook_instance=hook_instance,
                       fhir_server=fhir_server, prefetch=prefetch)


def request_for(resources: list[dict], hook: str, templates: dict[str, str], *, now: datetime,
                patient_id: str | None = None, orders: Iterable[dict] | None = None,
                selections: Iterable[str] | None = None, user_id: str = "Practitioner/example",
                hook_instance: str | None = None, fhir_server: str | None = None, prefetch: bool = True) -> dict:
    """The request for one patient's ``resources`` (dates resolved, references ``Type/id``), as ``build_request``.

    ``patient_id`` defaults to the first Patient's id; ``orders`` replace the resources' own
    draft orders (which are never part of the record).
    """
    if patient_id is None:
        patient_id = next((r["id"] for r in resources if r.get("resourceType") == "Patient"
                           and isinstance(r.get("id"), str)), None)
        if patient_id is None:
            raise ValueError("the resources hold no Patient with an id")
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


def check_fhir(data: object, what: str) -> None:
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


def order_resources(data: object, what: str) -> list[dict]:
    """The request resources (and Medications they reference) in a Bundle, a resource or a list."""
    check_fhir(data, what)
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
    check_fhir(data, what)
    try:
        split = patients(resolve_dates(data, now))
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
        try:
            orders = [_owned_by(o, patient_id) for o in resolve_dates(list(orders), now)]
        except ValueError as exc:
            raise InputError(f"the draft orders: {exc}") from None
    if hook != "patient-view" and not (orders if orders is not None else draft_orders(resources)):
        raise NoDraftOrders(f"{hook} needs draft orders and {what} has no request resource with status 'draft' "
                            f"for Patient/{patient_id}")
    return build_request({"resourceType": "Bundle", "type": "collection",
                          "entry": [{"resource": r} for r in resources]},
                         hook, templates, patient_id=patient_id, now=now, orders=orders, selections=selections)


# -- reading several files, and saying what was read ------------------------------------------

@dataclass
class Inputs:
    """FHIR data read from files and folders: the items, the files read, the lines or files not readable."""

    items: list = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    unreadable: int = 0

    def lone_bulk_file(self) -> Path | None:
        """The one NDJSON file given when its folder holds other NDJSON files: one type of a Bulk export."""
        if len(self.files) != 1 or self.files[0].suffix != ".ndjson":
            return None
        siblings = [p for p in self.files[0].parent.glob("*.ndjson") if p != self.files[0]]
        return self.files[0] if siblings else None


def read_inputs(paths: Iterable[str | Path]) -> Inputs:
    """Bundles, resources and Bulk NDJSON from files and folders (a folder: its ``*.json`` and ``*.ndjson``
    files, subfolders included). An NDJSON line that is not a JSON object with a ``resourceType`` is
    counted as unreadable and skipped; a ``.json`` file that is not JSON is an ``InputError``."""
    from ..fhir.bundles import fhir_files

    out = Inputs()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"cannot read {path}: no such file or folder")
        files = fhir_files(path)
        if path.is_dir() and not files:
            raise InputError(f"{path} holds no .json or .ndjson file")
        for file in files:
            out.files.append(file)
            if file.suffix != ".ndjson":
                out.items.append(read_fhir(file))
                continue
            try:
                text = file.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    out.unreadable += 1
                    continue
                if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
                    out.items.append(item)
                else:
                    out.unreadable += 1
    return out


def _resources(data: object) -> tuple[list[dict], int]:
    """(the resources in ``data``, entries and items that are not resources)."""
    found: list[dict] = []
    bad = 0
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict) and item.get("resourceType") == "Bundle":
            for entry in item.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict) \
                        and isinstance(entry["resource"].get("resourceType"), str):
                    stack.append(entry["resource"])
                else:
                    bad += 1
        elif isinstance(item, dict) and isinstance(item.get("resourceType"), str):
            found.append(item)
        else:
            bad += 1
    return found, bad


def reading(data: object, request: dict, unreadable: int = 0) -> dict:
    """What became of the input for ``request``: ``resources`` read, ``sent`` to the service (the
    patient's resources the hook's prefetch asks for, and the draft orders), ``dropped`` (other
    patients' or no patient's, and what the prefetch does not ask for), ``unreadable`` (lines or
    entries that are not FHIR resources)."""
    given, bad = _resources(data)
    sent: set = set()
    values = list((request.get("prefetch") or {}).values())
    values.append((request.get("context") or {}).get("draftOrders"))
    for res in _resources(values)[0]:
        rid = res.get("id")
        sent.add((res["resourceType"], rid) if isinstance(rid, str) else id(res))
    total = len(given)
    return {"patient": (request.get("context") or {}).get("patientId"), "hook": request.get("hook"),
            "resources": total, "sent": min(len(sent), total), "dropped": max(0, total - len(sent)),
            "unreadable": unreadable + bad}


def describe_reading(counts: dict) -> str:
    """One line for people: what was read, sent, dropped and unreadable."""
    def n(k: int, what: str) -> str:
        return f"{k:,} {what}{'' if k == 1 else 's'}"

    return (f"Read {n(counts['resources'], 'resource')}: {counts['sent']:,} sent to {counts['hook']} for "
            f"Patient/{counts['patient']}, {counts['dropped']:,} dropped (other patients' or none, or not asked for "
            f"by the hook's prefetch), {counts['unreadable']:,} unreadable.")
