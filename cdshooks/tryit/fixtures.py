"""Fixtures: the synthetic FHIR scenarios in ``fhir_fixtures/`` and their index.

They serve the tests, the CLI, the playground and the development ``/fhir`` endpoint.

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..cards.registry import HOOKS
from ..fhir.bundles import collection, load_bundle, load_resources, patients
from ..service.hook_request import build_request

__all__ = ["FIXTURES_DIR", "INDEX_FILE", "Scenario", "scenarios", "for_scenario"]

FIXTURES_DIR = Path(__file__).resolve().parent.parent.parent / "fhir_fixtures"
INDEX_FILE = "index.json"

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
    if extra and Path(extra).resolve() == Path(root).resolve():
        extra = None  # the same folder named twice (the package's and CDSHOOKS_FIXTURES_DIR) is read once
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


def for_scenario(scenario: Scenario, templates: dict[str, str], *, now: datetime | None = None,
                 **options) -> dict:
    """``build_request`` for an indexed scenario (its hook, patient and selections)."""
    now = now or datetime.now(timezone.utc)
    return build_request(scenario.bundle(now), scenario.hook, templates, patient_id=scenario.patient, now=now,
                         selections=scenario.selections, **options)
