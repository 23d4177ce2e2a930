"""Dev FHIR endpoint: a read-only FHIR R4 server over the scenario files, for development and tests only.

``blueprint(folders)`` serves every patient of the given folders (the repo's
``fhir_fixtures/`` and ``CDSHOOKS_FIXTURES_DIR``): ``*.json`` files (scenario Bundles,
Synthea transaction Bundles, any Bundle or single resource; ``index.json`` excepted) and
each folder's ``*.ndjson`` files (Bulk Data export). It is what the playground and the
public CDS Hooks sandbox point ``fhirServer`` at, and what our FHIR-client tests call.

* ``GET  {base}/metadata``: CapabilityStatement (FHIR 4.0.1), the types served and their
  search parameters;
* ``GET  {base}/{type}/{id}``: read;
* ``GET  {base}/{type}?...`` and ``POST {base}/{type}/_search`` (form body, as the sandbox
  sends): search with ``fhirsearch``'s parameters; ``GET {base}/Patient`` lists every
  patient. Answers are ``searchset`` Bundles with ``total``, absolute ``fullUrl``\\ s, a
  ``self`` link and, when more matches remain, a ``next`` link (paging with ``_count``,
  default ``DEFAULT_COUNT`` and at most ``max_count``, and ``_offset``);
* ``$export`` (system, ``Patient`` and ``Group`` level; ``bulk_export``): FHIR Bulk Data, async;
* errors are OperationOutcomes: 404 for an unknown id or a type not served, 400 for a
  malformed parameter value. Every body is ``application/fhir+json``; any origin may call
  (``Access-Control-Allow-Origin: *``: the data is synthetic).

Draft orders (``fixtures.is_draft_order``) are not served: they belong to the hook's
context, not the record. Relative dates (``$now-3d``) are resolved at request time. Files
are parsed once and re-read only when their modification time or size changes; resolving
dates per request touches only the resources that have them (cached per second).

The endpoint holds no authentication and must never run in production: the app registers
it only when ``CDSHOOKS_ENV`` is not ``production``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from flask import Blueprint, Response, request, url_for

from ..cards.registry import DATA_KEYS
from ..fhir import search as fhirsearch
from ..fhir.bundles import has_relative_dates, instant, is_draft_order, load_resources, patient_of, resolve_dates
from ..logs import event
from .bulk_export import add_export
from .fixtures import INDEX_FILE

__all__ = ["blueprint", "outcome", "Store", "View", "DEFAULT_COUNT", "FHIR_JSON"]

FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 100
# Types answered (with an empty searchset) even when no file holds one.
_ALWAYS_SERVED = frozenset({"Patient", "Medication", *(k.resource_type for k in DATA_KEYS.values())})
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")


# -- the data -------------------------------------------------------------------------------

@dataclass
class _Base:
    """The loaded resources, dates unresolved, indexed."""

    by_type: dict[str, list[dict]] = field(default_factory=dict)
    by_patient: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    by_key: dict[str, dict] = field(default_factory=dict)
    dated: list[dict] = field(default_factory=list)  # resources with relative dates
    duplicates: int = 0


@dataclass
class View:
    """The data as of one instant: relative dates resolved."""

    stamp: str
    by_type: dict[str, list[dict]]
    by_patient: dict[tuple[str, str], list[dict]]
    by_key: dict[str, dict]

    def types(self) -> list[str]:
        return sorted(_ALWAYS_SERVED | set(self.by_type))

    def candidates(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict]:
        """The resources a search need look at: one patient's when the search names a single patient."""
        for name, value in params:
            if name not in ("patient", "subject") or not value or "," in value:
                continue
            key = fhirsearch.reference_key(value)
            if key is not None and key.startswith("Patient/"):
                return self.by_patient.get((resource_type, key[len("Patient/"):]), [])
            if key is None and name == "patient":
                return self.by_patient.get((resource_type, value), [])
        return self.by_type.get(resource_type, [])


def _sources(folder: Path) -> list[Path]:
    """The files of a folder the endpoint serves; the folder itself stands for its NDJSON files."""
    files = [p for p in sorted(folder.glob("*.json")) if p.name != INDEX_FILE]
    if any(folder.glob("*.ndjson")):
        files.append(folder)
    return files


def _signature(source: Path) -> tuple:
    paths = sorted(source.glob("*.ndjson")) if source.is_dir() else [source]
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


class Store:
    """Every resource of ``folders`` (missing folders are skipped), reloaded when a file changes."""

    def __init__(self, folders: Iterable[str | Path]):
        self.folders = [Path(f) for f in folders if f and Path(f).is_dir()]
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[tuple, list[dict]]] = {}
        self._signature: tuple = ()
        self._base = _Base()
        self._view: View | None = None

    def _refresh(self) -> None:
        sources = [s for folder in self.folders for s in _sources(folder)]
        signature = tuple((s, _signature(s)) for s in sources)
        if signature == self._signature:
            return
        files: dict[Path, tuple[tuple, list[dict]]] = {}
        for source, sig in signature:
            cached = self._files.get(source)
            files[source] = cached if cached and cached[0] == sig else (sig, load_resources(source))
        self._files, self._signature = files, signature
        self._base = self._index(r for _, resources in files.values() for r in resources)
        self._view = None
        event("devfhir.loaded", files=len(files), resources=len(self._base.by_key),
              duplicates=self._base.duplicates)

    @staticmethod
    def _index(resources: Iterable[dict]) -> _Base:
        base = _Base()
        for res in resources:
            if is_draft_order(res) or not isinstance(res.get("id"), str):
                continue
            key = f"{res['resourceType']}/{res['id']}"
            if key in base.by_key:
                base.duplicates += 1  # the first file (in folder and name order) wins
                continue
            base.by_key[key] = res
            base.by_type.setdefault(res["resourceType"], []).append(res)
            pid = patient_of(res)
            if pid is not None:
                base.by_patient.setdefault((res["resourceType"], pid), []).append(res)
            if has_relative_dates(res):
                base.dated.append(res)
        return base

    def view(self, now: datetime) -> View:
        """The data with relative dates resolved against ``now`` (to the second)."""
        stamp = instant(now)
        with self._lock:
            self._refresh()
            if self._view is not None and self._view.stamp == stamp:
                return self._view
            base = self._base
            swap = {id(r): resolve_dates(r, now) for r in base.dated}
            touched = {r["resourceType"] for r in base.dated}

            def resolved(items: list[dict]) -> list[dict]:
                return [swap.get(id(r), r) for r in items]

            by_type = {t: resolved(v) if t in touched else v for t, v in base.by_type.items()}
            by_patient = {k: resolved(v) if k[0] in touched else v for k, v in base.by_patient.items()}
            by_key = dict(base.by_key)
            for r in base.dated:
                by_key[f"{r['resourceType']}/{r['id']}"] = swap[id(r)]
            self._view = View(stamp, by_type, by_patient, by_key)
            return self._view


# -- HTTP -----------------------------------------------------------------------------------

def _fhir(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype=FHIR_JSON)


def outcome(status: int, code: str, message: str) -> Response:
    """An OperationOutcome error response."""
    return _fhir({"resourceType": "OperationOutcome",
                  "issue": [{"severity": "error", "code": code, "diagnostics": message}]}, status)


def _base_url() -> str:
    """This registration's absolute base URL (the blueprint may be mounted more than once)."""
    return url_for(".metadata", _external=True)[: -len("/metadata")]


def _capability(view: View, base: str, now: datetime) -> dict:
    resources = []
    for rtype in view.types():
        entry: dict = {
            "type": rtype,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": n, "type": t} for n, t in fhirsearch.search_params(rtype).items()],
        }
        includes = fhirsearch.includes_for(rtype)
        if includes:
            entry["searchInclude"] = includes
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(now),
        "kind": "instance",
        "software": {"name": "cdshooks dev FHIR endpoint"},
        "implementation": {"description": "Read-only synthetic FHIR data for development and tests", "url": base},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only. Page with _count and _offset (entries to skip); unknown search "
                             "parameters are ignored and left out of the self link.",
            "resource": resources,
            "searchParam": [{"name": n, "type": t} for n, t in fhirsearch.RESULT_PARAMS.items()],
        }],
    }


def blueprint(folders: Iterable[str | Path], base_path: str = "/fhir", *, max_count: int = 1000,
              clock: Callable[[], datetime] | None = None, name: str | None = None,
              export_delay: float = 1.0) -> Blueprint:
    """A Flask Blueprint serving ``folders`` read-only under ``base_path``.

    ``max_count`` caps ``_count`` (a test server uses 2 to force paging); ``clock`` gives the
    request time that relative dates resolve against (default: now, UTC); ``name`` is the
    blueprint's name (default: derived from ``base_path``). ``$export`` (``bulk_export``) answers
    its status URL with ``202`` for ``export_delay`` seconds after a kick-off.
    """
    store = Store(folders)
    now_fn = clock or (lambda: datetime.now(timezone.utc))
    bp = Blueprint(name or (base_path.strip("/").replace("/", "_") or "fhir"), __name__, url_prefix=base_path)

    def served(view: View, rtype: str) -> bool:
        return bool(_TYPE_NAME.fullmatch(rtype)) and rtype in view.types()

    @bp.after_request
    def cors(response: Response) -> Response:
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        if request.method == "OPTIONS":
            response.headers.setdefault("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept")
            response.headers.setdefault("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        return response

    @bp.get("/metadata")
    def metadata() -> Response:
        now = now_fn()
        return _fhir(_capability(store.view(now), _base_url(), now))

    @bp.get("/<rtype>/<rid>")
    def read(rtype: str, rid: str) -> Response:
        view = store.view(now_fn())
        if not served(view, rtype):
            return outcome(404, "not-supported", f"resource type {rtype!r} is not served here")
        resource = view.by_key.get(f"{rtype}/{rid}")
        if resource is None:
            return outcome(404, "not-found", f"{rtype}/{rid} is not known")
        return _fhir(resource)

    @bp.get("/<rtype>")
    def search_get(rtype: str) -> Response:
        return _search(rtype, list(request.args.items(multi=True)))

    @bp.post("/<rtype>/_search")
    def search_post(rtype: str) -> Response:
        return _search(rtype, list(request.args.items(multi=True)) + list(request.form.items(multi=True)))

    def _search(rtype: str, params: list[tuple[str, str]]) -> Response:
        view = store.view(now_fn())
        if not served(view, rtype):
            return outcome(404, "not-supported", f"resource type {rtype!r} is not served here")
        counts = [v for k, v in params if k == "_count" and v]
        try:
            count = int(counts[-1]) if counts else DEFAULT_COUNT
        except ValueError:
            return outcome(400, "value", f"_count must be a whole number, not {counts[-1]!r}")
        paged = [(k, v) for k, v in params if k != "_count"] + [("_count", str(max(0, min(count, max_count))))]
        try:
            result = fhirsearch.run(view.candidates(rtype, params), rtype, paged, lookup=view.by_key)
        except fhirsearch.SearchError as exc:
            return outcome(400, "value", str(exc))
        base = _base_url()
        nxt = result.next_offset
        return _fhir(fhirsearch.searchset(
            result.matches, result.total,
            f"{base}/{rtype}?{result.query(nxt)}" if nxt is not None else None,
            included=result.included, base_url=base, self_url=f"{base}/{rtype}?{result.query()}",
        ))

    add_export(bp, lambda: store.view(now_fn()), now_fn, outcome, delay=export_delay)
    return bp
