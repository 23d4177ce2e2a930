"""FHIR files and Bundles: reading them, relative dates, draft orders, and splitting by patient.

Data may be any Bundle (collection, transaction as Synthea writes them, searchset, document),
a single resource, or Bulk Data NDJSON (``*.ndjson``, one resource per line; all NDJSON files
of a folder form one stream). ``patients()`` splits such data by patient, resolving
``urn:uuid`` references through the Bundle's ``fullUrl``\\ s to ``Type/id`` as a FHIR server
does when it stores a transaction.

* Request resources (``MedicationRequest``, ``ServiceRequest``, ... see ``REQUEST_TYPES``)
  whose ``status`` is ``draft`` are **draft orders** for the order hooks
  (``context.draftOrders``); they are not part of the patient's record.
* **Relative dates**: any JSON string value that is exactly ``$now``, ``$today`` or one of
  them followed by an offset ``+N`` / ``-N`` with unit ``d`` (days), ``h`` (hours) or ``m``
  (minutes) -- ``$now-30d``, ``$now+2h``, ``$now-15m``, ``$today-400d`` -- is replaced when
  the file is loaded: ``$now...`` by an ISO 8601 instant in UTC with a ``Z``
  (``2025-03-01T09:30:00Z``), ``$today...`` by a date (``2025-03-01``). ``$today`` takes
  whole days only. A string that starts with ``$now`` or ``$today`` and is not of that form
  is an error, so a typo never reaches a rule as a bad date.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .search import reference_key

__all__ = ["REQUEST_TYPES", "instant", "has_relative_dates", "resolve_dates", "load_bundle", "collection", "fhir_files",
           "load_resources", "bundle_resources", "is_draft_order",
           "draft_orders", "record_resources", "patient_of", "patients"]


# Request resources whose ``draft`` status makes them draft orders.
REQUEST_TYPES = frozenset({
    "MedicationRequest", "ServiceRequest", "NutritionOrder", "VisionPrescription", "DeviceRequest",
    "SupplyRequest", "CommunicationRequest",
})

_RELATIVE = re.compile(r"\$(now|today)(?:([+-])(\d+)([dhm]))?")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
_MARKERS = ("$now", "$today")


# -- relative dates -----------------------------------------------------------------------

def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def instant(moment: datetime) -> str:
    """An ISO 8601 instant in UTC with ``Z``, to the second."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _relative(value: str, now: datetime) -> str:
    m = _RELATIVE.fullmatch(value)
    if m is None:
        raise ValueError(f"malformed relative date {value!r} (use $now, $now-30d, $now+2h, $today-400d)")
    anchor, sign, amount, unit = m.groups()
    delta = timedelta(**{_UNITS[unit]: int(amount)}) if amount else timedelta()
    if sign == "-":
        delta = -delta
    if anchor == "now":
        return instant(_utc(now) + delta)
    if unit not in (None, "d"):
        raise ValueError(f"malformed relative date {value!r}: $today takes whole days only")
    return (_utc(now).date() + delta).isoformat()


def _is_token(value: str) -> bool:
    """``$now``/``$today`` alone or followed by a sign; such a string must then be a well-formed token."""
    for marker in _MARKERS:
        if value.startswith(marker):
            rest = value[len(marker):]
            return rest == "" or rest[0] in "+-"
    return False


def has_relative_dates(value: object) -> bool:
    """Whether any string inside ``value`` is a relative-date token."""
    if isinstance(value, str):
        return _is_token(value)
    if isinstance(value, dict):
        return any(has_relative_dates(v) for v in value.values())
    if isinstance(value, list):
        return any(has_relative_dates(v) for v in value)
    return False


def _copy_on_write(value: object, leaf) -> object:
    """``value`` with each string replaced by ``leaf(key, string)``; unchanged parts are shared, not copied."""
    if isinstance(value, dict):
        out = None
        for k, v in value.items():
            nv = leaf(k, v) if isinstance(v, str) else _copy_on_write(v, leaf)
            if nv is not v:
                if out is None:
                    out = dict(value)
                out[k] = nv
        return value if out is None else out
    if isinstance(value, list):
        items = [leaf(None, v) if isinstance(v, str) else _copy_on_write(v, leaf) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def resolve_dates(value: Any, now: datetime) -> Any:
    """A copy of ``value`` with relative-date tokens replaced; parts without tokens are shared, not copied."""
    if isinstance(value, str):
        return _relative(value, now) if _is_token(value) else value
    return _copy_on_write(value, lambda _key, text: _relative(text, now) if _is_token(text) else text)


# -- reading files --------------------------------------------------------------------------

def _read(path: Path) -> object:
    """A file's JSON; a ``.ndjson`` file, or a folder's ``*.ndjson`` files together, as a collection Bundle."""
    if path.is_dir():
        files = sorted(path.glob("*.ndjson"))
    elif path.suffix == ".ndjson":
        files = [path]
    else:
        return json.loads(path.read_text("utf-8"))
    lines = [json.loads(line) for f in files for line in f.read_text("utf-8").splitlines() if line.strip()]
    return collection(lines)


def load_bundle(path: str | Path, now: datetime) -> dict:
    """A FHIR file with its relative dates resolved against ``now`` (a fresh object on each call).

    An NDJSON file, or a folder of them, comes back as a ``collection`` Bundle of the lines.
    """
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    try:
        return resolve_dates(data, now)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def collection(resources: Iterable[dict]) -> dict:
    """A ``collection`` Bundle of ``resources``."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _entries(data: object) -> Iterator[tuple[str | None, dict]]:
    """``(fullUrl, resource)`` pairs: a Bundle's entries (nested Bundles flattened), a resource, or a stream."""
    if isinstance(data, dict):
        if data.get("resourceType") == "Bundle":
            for entry in data.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    res = entry["resource"]
                    if res.get("resourceType") == "Bundle":
                        yield from _entries(res)
                    else:
                        yield (entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None), res
        elif isinstance(data.get("resourceType"), str):
            yield None, data
        return
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        for item in data:
            yield from _entries(item)


def load_resources(path: str | Path) -> list[dict]:
    """The resources of one FHIR file, relative dates unresolved, ``urn:uuid`` references made ``Type/id``."""
    return _normalized(_entries(_read(Path(path))))


def bundle_resources(data: object) -> list[dict]:
    """The resources of parsed FHIR data (a Bundle, a resource or a list), ``urn:uuid`` references made ``Type/id``."""
    return _normalized(_entries(data))


# -- draft orders and record ----------------------------------------------------------------

def is_draft_order(resource: dict) -> bool:
    return resource.get("resourceType") in REQUEST_TYPES and resource.get("status") == "draft"


def draft_orders(bundle: dict | Iterable[dict]) -> list[dict]:
    """The scenario's draft orders, in file order."""
    return [r for _, r in _entries(bundle) if is_draft_order(r)]


def record_resources(bundle: dict | Iterable[dict]) -> list[dict]:
    """Everything in the scenario except its draft orders, in file order."""
    return [r for _, r in _entries(bundle) if not is_draft_order(r)]


# -- splitting by patient -------------------------------------------------------------------

_PATIENT_FIELDS = ("subject", "patient", "beneficiary")


def patient_of(resource: dict) -> str | None:
    """The id of the patient a resource belongs to: its own id for a Patient, else its subject/patient reference."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for name in _PATIENT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            key = reference_key(ref["reference"])
            if key and key.startswith("Patient/"):
                return key[len("Patient/"):]
    return None


def _rewrite(value: object, urls: dict[str, str], found: set[str]) -> object:
    """``value`` with ``reference`` strings found in ``urls`` replaced (copy-on-write); collects every reference."""
    def leaf(key: str | None, text: str) -> str:
        if key != "reference":
            return text
        found.add(urls.get(text, text))
        return urls.get(text, text)

    return _copy_on_write(value, leaf)


def _normalized_with_refs(pairs: Iterable[tuple[str | None, dict]]) -> list[tuple[dict, set[str]]]:
    pairs = [(u, r) for u, r in pairs if isinstance(r.get("resourceType"), str)]
    urls: dict[str, str] = {}
    for url, res in pairs:
        if url and url.startswith("urn:uuid:"):
            rid = res.get("id") if isinstance(res.get("id"), str) else url[len("urn:uuid:"):]
            urls[url] = f"{res['resourceType']}/{rid}"
    out: list[tuple[dict, set[str]]] = []
    for url, res in pairs:
        if url in urls and not isinstance(res.get("id"), str):
            res = {**res, "id": urls[url].split("/", 1)[1]}
        refs: set[str] = set()
        out.append((_rewrite(res, urls, refs), refs))  # type: ignore[arg-type]
    return out


def _normalized(pairs: Iterable[tuple[str | None, dict]]) -> list[dict]:
    return [res for res, _ in _normalized_with_refs(pairs)]


def patients(data: dict | Iterable[dict]) -> dict[str, list[dict]]:
    """Resources by patient id, from a multi-patient Bundle or a Bulk NDJSON stream (an iterable of resources).

    Each list starts with the Patient and holds, in input order, the resources whose
    subject/patient is that Patient, plus the resources with no patient of their own
    (Medication, Practitioner, Organization, ...) that those resources reference. ``urn:uuid``
    references are resolved through ``fullUrl`` and rewritten to ``Type/id`` (the input is
    not modified). Patients appear in input order.
    """
    items = _normalized_with_refs(_entries(data))
    shared: dict[str, dict] = {}
    owned: dict[str, list[tuple[dict, set[str]]]] = {}
    heads: dict[str, dict] = {}
    for res, refs in items:
        pid = patient_of(res)
        if res["resourceType"] == "Patient":
            if pid is not None and pid not in heads:
                heads[pid] = res
                owned.setdefault(pid, []).insert(0, (res, refs))
        elif pid is not None:
            owned.setdefault(pid, []).append((res, refs))
        elif isinstance(res.get("id"), str):
            shared.setdefault(f"{res['resourceType']}/{res['id']}", res)
    out: dict[str, list[dict]] = {}
    for pid in heads:  # resources of a patient the data does not hold are left out
        members = owned[pid]
        wanted: set[str] = set()
        for _, refs in members:
            wanted |= {k for k in (reference_key(r) for r in refs) if k in shared}
        linked = [r for key, r in shared.items() if key in wanted]
        out[pid] = [*(r for r, _ in members), *linked]
    return out


def fhir_files(path: Path) -> list[Path]:
    """The FHIR files under ``path``: itself, or a folder's ``*.json`` (not ``index.json``) and
    ``*.ndjson`` files, subfolders included, in name order."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name != "index.json"
                  and p.suffix in (".json", ".ndjson"))
