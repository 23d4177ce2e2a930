"""Fixtures: synthetic FHIR scenarios and other FHIR files, loaded for tests, the CLI, the playground and ``/fhir``.

Conventions (every scenario file in ``fhir_fixtures/`` follows them):

* A **scenario** is a FHIR R4 Bundle of type ``collection`` holding one Patient and that
  patient's resources. Every resource has an ``id``; references to the patient are
  ``"Patient/<id>"``. Resource ids are unique across all scenario files, because the dev
  ``/fhir`` endpoint serves every file at once.
* Request resources (``MedicationRequest``, ``ServiceRequest``, ... see ``REQUEST_TYPES``)
  whose ``status`` is ``draft`` are the scenario's **draft orders** for the order hooks
  (``context.draftOrders``); they are not part of the patient's record.
* **Relative dates**: any JSON string value that is exactly ``$now``, ``$today`` or one of
  them followed by an offset ``+N`` / ``-N`` with unit ``d`` (days), ``h`` (hours) or ``m``
  (minutes) -- ``$now-30d``, ``$now+2h``, ``$now-15m``, ``$today-400d`` -- is replaced when
  the file is loaded: ``$now...`` by an ISO 8601 instant in UTC with a ``Z``
  (``2025-03-01T09:30:00Z``), ``$today...`` by a date (``2025-03-01``). ``$today`` takes
  whole days only. A string that starts with ``$now`` or ``$today`` and is not of that form
  is an error, so a typo never reaches a rule as a bad date.
* ``fhir_fixtures/index.json`` lists the scenarios::

    {"scenarios": [{"name": "...", "file": "x.json",
                    "hook": "patient-view|order-select|order-sign", "patient": "<id>",
                    "fires": ["rule-id", ...], "silent": ["rule-id", ...],
                    "description": "...", "selections": ["MedicationRequest/x"]}]}

  ``selections`` is optional (order-select defaults to every draft order). Several entries
  may share a file (one per hook, say). Edit it load-modify-save; keep the key order.

Other FHIR files (an extra folder such as ``CDSHOOKS_FIXTURES_DIR``) may be any Bundle
(collection, transaction as Synthea writes them, searchset, document), a single resource,
or Bulk Data NDJSON (``*.ndjson``, one resource per line; all NDJSON files of a folder form
one stream). ``patients()`` splits such data by patient, resolving ``urn:uuid`` references
through the Bundle's ``fullUrl``\\ s to ``Type/id`` as a FHIR server does when it stores a
transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .fhirsearch import reference_key
from .rules import HOOKS

__all__ = [
    "FIXTURES_DIR", "INDEX_FILE", "REQUEST_TYPES", "Scenario", "scenarios", "load_bundle",
    "load_resources", "resolve_dates", "has_relative_dates", "instant", "draft_orders", "is_draft_order",
    "record_resources", "patients", "patient_of", "collection",
]

# The repository's scenario folder: ``cdshooks/../fhir_fixtures`` (the repo checkout, also
# under an editable install; a wheel install has none and ``scenarios()`` is then empty).
FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fhir_fixtures"
INDEX_FILE = "index.json"

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


def resolve_dates(value: object, now: datetime) -> object:
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
        return resolve_dates(data, now)  # type: ignore[return-value]
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


# -- scenarios ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """One entry of an ``index.json`` (or, for an extra folder without one, one patient of a file)."""

    name: str
    file: Path
    hook: str
    patient: str
    fires: tuple[str, ...] = ()
    silent: tuple[str, ...] = ()
    description: str = ""
    selections: tuple[str, ...] | None = None
    # per rule id: {"indicator": ..., "codes": [codes the card's suggested resources carry],
    #               "detail": [strings its detail must contain], "absent_codes": [...]}
    expect: dict = field(default_factory=dict)

    def bundle(self, now: datetime) -> dict:
        """The scenario's data as a collection Bundle with dates resolved against ``now``.

        A file holding several patients is cut down to this scenario's patient (and the
        draft orders that name that patient).
        """
        data = load_bundle(self.file, now)
        split = patients(data)
        if len(split) <= 1:
            return data
        if self.patient not in split:
            raise ValueError(f"{self.file}: no Patient/{self.patient}")
        return collection(split[self.patient])


def _from_index(folder: Path) -> list[Scenario]:
    index = folder / INDEX_FILE
    if not index.is_file():
        return []
    data = json.loads(index.read_text("utf-8"))
    out = []
    for item in data.get("scenarios", []):
        if item.get("hook") not in HOOKS:
            raise ValueError(f"{index}: scenario {item.get('name')!r} has unknown hook {item.get('hook')!r}")
        sel = item.get("selections")
        out.append(Scenario(
            name=item["name"], file=folder / item["file"], hook=item["hook"], patient=item["patient"],
            fires=tuple(item.get("fires", ())), silent=tuple(item.get("silent", ())),
            description=item.get("description", ""), selections=tuple(sel) if sel is not None else None,
            expect=dict(item.get("expect", {})),
        ))
    return out


def _unindexed(folder: Path, indexed: set[Path]) -> list[Scenario]:
    """A patient-view scenario per patient of each FHIR file no index names (the NDJSON files together)."""
    sources = [p for p in sorted(folder.glob("*.json")) if p.name != INDEX_FILE and p not in indexed]
    if any(folder.glob("*.ndjson")):
        sources.append(folder)
    out: list[Scenario] = []
    for source in sources:
        label = source.stem if source != folder else folder.name
        for pid, resources in patients(load_resources(source)).items():
            out.append(Scenario(name=f"{label}/{pid}", file=source, hook="patient-view", patient=pid,
                                description=_describe(resources)))
    return out


def _describe(resources: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in resources:
        counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))


def scenarios(root: str | Path = FIXTURES_DIR, extra: str | Path | None = None) -> list[Scenario]:
    """The scenarios of ``root``'s ``index.json``, then those of an ``extra`` folder.

    The extra folder (``CDSHOOKS_FIXTURES_DIR``) may have its own ``index.json``; each of its
    ``*.json`` files that no index names adds one ``patient-view`` scenario per patient, named
    ``<file stem>/<patient id>``. Names are unique: a later duplicate is an error.
    """
    found = _from_index(Path(root)) if Path(root).is_dir() else []
    if extra:
        folder = Path(extra)
        indexed = _from_index(folder)
        found += indexed + _unindexed(folder, {s.file for s in indexed})
    seen: set[str] = set()
    for s in found:
        if s.name in seen:
            raise ValueError(f"duplicate scenario name {s.name!r}")
        seen.add(s.name)
    return found
