"""Fixture loading into a FHIR server: every record resource of the fixture folders in one transaction."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Iterable

from ..fhir.bundles import fhir_files, is_draft_order, load_resources, resolve_dates
from .fixtures import FIXTURES_DIR

__all__ = ["fixture_folders", "transaction"]


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
        for source in fhir_files(folder):
            for res in resolve_dates(load_resources(source), now):
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
