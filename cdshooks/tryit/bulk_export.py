"""FHIR Bulk Data ``$export`` on the development FHIR endpoint (Bulk Data Access IG 2.0, async pattern).

Kick-off, at the system, patient or group level, by GET (query) or POST (a ``Parameters`` body),
with ``Prefer: respond-async``:

* ``{base}/$export``, ``{base}/Patient/$export``, ``{base}/Group/{id}/$export``: ``202`` with
  ``Content-Location`` = the job's status URL. Parameters: ``_type`` (comma-separated types),
  ``_typeFilter`` (``Type?search`` queries, comma-separated, ORed per type, run with the endpoint's
  own search), ``_outputFormat`` (``application/fhir+ndjson``, ``application/ndjson`` or ``ndjson``),
  ``_since`` (``meta.lastUpdated`` at or after; resources without it are kept). A Group is a
  ``Group`` resource of the data, or ``fixtures``: every patient served.
* ``GET`` status URL: ``202`` with ``Retry-After`` (seconds) and ``X-Progress`` while the job
  "runs" (``delay`` seconds after kick-off, to exercise a client's polling), then ``200`` with the
  manifest (``transactionTime``, ``request``, ``requiresAccessToken``: false, ``output`` with one
  file per type, ``error``); ``DELETE`` cancels (``202``); an unknown job is ``404``.
* ``GET`` file URL: ``application/fhir+ndjson``, one resource per line.

The snapshot is taken at kick-off with relative dates resolved then. Jobs live in memory (the
last ``MAX_JOBS``); like the whole endpoint, this serves synthetic data and is off in production.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Callable
from urllib.parse import parse_qsl, quote

from flask import Blueprint, Response, request

from ..fhir import search as fhirsearch
from ..fhir.bundles import instant, patient_of

__all__ = ["add_export", "MAX_JOBS", "FIXTURES_GROUP"]

MAX_JOBS = 20
FIXTURES_GROUP = "fixtures"
NDJSON = "application/fhir+ndjson"
_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}


class _Jobs:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: OrderedDict[str, dict] = OrderedDict()

    def add(self, job: dict) -> str:
        job_id = uuid.uuid4().hex
        with self.lock:
            self.jobs[job_id] = job
            while len(self.jobs) > MAX_JOBS:
                self.jobs.popitem(last=False)
        return job_id

    def get(self, job_id: str) -> dict | None:
        with self.lock:
            return self.jobs.get(job_id)

    def drop(self, job_id: str) -> bool:
        with self.lock:
            return self.jobs.pop(job_id, None) is not None


def _params() -> list[tuple[str, str]] | str:
    """The kick-off parameters (query, or a POSTed Parameters resource); a string is an error message."""
    params = list(request.args.items(multi=True))
    if request.method == "POST" and request.data:
        try:
            body = json.loads(request.data)
        except ValueError:
            return "the body is not JSON"
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            return "the body must be a Parameters resource"
        for p in body.get("parameter") or []:
            if isinstance(p, dict) and isinstance(p.get("name"), str):
                value = next((v for k, v in p.items() if k.startswith("value") and isinstance(v, str)), None)
                if value is not None:
                    params.append((p["name"], value))
    return params


def _type_filters(values: list[str]) -> dict[str, list[str]] | str:
    out: dict[str, list[str]] = {}
    for value in values:
        for query in value.split(","):
            rtype, sep, search = query.strip().partition("?")
            if not sep or not rtype:
                return f"_typeFilter {query!r} is not Type?search"
            out.setdefault(rtype, []).append(search)
    return out


def add_export(bp: Blueprint, view_at: Callable[[], object], now_fn: Callable[[], datetime],
               outcome: Callable[[int, str, str], Response], *, delay: float = 1.0) -> None:
    """Register ``$export`` and its status and file routes on ``bp`` (the dev FHIR endpoint)."""
    jobs = _Jobs()

    def base_url() -> str:
        return request.url_root.rstrip("/") + (bp.url_prefix or "")

    def kickoff(level: str, group: str | None = None) -> Response:
        if "respond-async" not in request.headers.get("Prefer", ""):
            return outcome(400, "invalid", "$export needs the header Prefer: respond-async")
        params = _params()
        if isinstance(params, str):
            return outcome(400, "invalid", params)
        fmt = [v for k, v in params if k == "_outputFormat"]
        if fmt and fmt[-1] not in _FORMATS:
            return outcome(400, "not-supported", f"_outputFormat {fmt[-1]!r} is not supported (ndjson only)")
        types = {t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()}
        filters = _type_filters([v for k, v in params if k == "_typeFilter"])
        if isinstance(filters, str):
            return outcome(400, "invalid", filters)
        since = [v for k, v in params if k == "_since"]
        view = view_at()
        members: set[str] | None = None
        if level == "group":
            if group == FIXTURES_GROUP:
                members = {r["id"] for r in view.by_type.get("Patient", [])}  # type: ignore[attr-defined]
            else:
                found = view.by_key.get(f"Group/{group}")  # type: ignore[attr-defined]
                if found is None:
                    return outcome(404, "not-found", f"Group/{group} is not known")
                members = {ref.split("/", 1)[1] for m in found.get("member") or []
                           for ref in [((m or {}).get("entity") or {}).get("reference", "")]
                           if ref.startswith("Patient/")}
        files: dict[str, list[dict]] = {}
        for rtype, resources in sorted(view.by_type.items()):  # type: ignore[attr-defined]
            if (types and rtype not in types) or rtype == "Group":
                continue
            chosen = resources
            if level != "system":
                chosen = [r for r in chosen if rtype == "Medication" or (
                    patient_of(r) is not None and (members is None or patient_of(r) in members))]
            if since:
                chosen = [r for r in chosen if ((r.get("meta") or {}).get("lastUpdated") or "9999") >= since[-1]]
            if rtype in filters:
                kept: dict[int, dict] = {}
                for search in filters[rtype]:
                    pairs = [(k, v) for k, v in parse_qsl(search, keep_blank_values=True)
                             if k not in ("_count", "_sort", "_include", "_offset")]
                    try:
                        result = fhirsearch.run(chosen, rtype, pairs + [("_count", str(len(chosen) or 1))])
                    except fhirsearch.SearchError as exc:
                        return outcome(400, "invalid", f"_typeFilter {rtype}?{search}: {exc}")
                    kept.update({id(r): r for r in result.matches})
                chosen = [r for r in chosen if id(r) in kept]
            if chosen:
                files[rtype] = chosen
        job = {"ready": time.monotonic() + delay, "request": request.url, "time": instant(now_fn()),
               "files": {t: "".join(json.dumps(r) + "\n" for r in rs) for t, rs in files.items()}}
        job_id = jobs.add(job)
        resp = Response(status=202)
        resp.headers["Content-Location"] = f"{base_url()}/$export-status/{job_id}"
        return resp

    @bp.route("/$export", methods=["GET", "POST"])
    def export_system() -> Response:
        return kickoff("system")

    @bp.route("/Patient/$export", methods=["GET", "POST"])
    def export_patients() -> Response:
        return kickoff("patient")

    @bp.route("/Group/<gid>/$export", methods=["GET", "POST"])
    def export_group(gid: str) -> Response:
        return kickoff("group", gid)

    @bp.route("/$export-status/<job_id>", methods=["GET", "DELETE"])
    def export_status(job_id: str) -> Response:
        job = jobs.get(job_id)
        if job is None:
            return outcome(404, "not-found", "no such export job")
        if request.method == "DELETE":
            jobs.drop(job_id)
            return Response(status=202)
        left = job["ready"] - time.monotonic()
        if left > 0:
            resp = Response(status=202)
            resp.headers["Retry-After"] = str(max(1, round(left)))
            resp.headers["X-Progress"] = "exporting"
            return resp
        base = base_url()
        manifest = {"transactionTime": job["time"], "request": job["request"], "requiresAccessToken": False,
                    "output": [{"type": t, "url": f"{base}/$export-file/{job_id}/{quote(t)}.ndjson",
                                "count": text.count("\n")} for t, text in job["files"].items()],
                    "error": []}
        return Response(json.dumps(manifest), status=200, mimetype="application/json")

    @bp.get("/$export-file/<job_id>/<name>")
    def export_file(job_id: str, name: str) -> Response:
        job = jobs.get(job_id)
        rtype = name[: -len(".ndjson")] if name.endswith(".ndjson") else None
        if job is None or rtype not in job["files"]:
            return outcome(404, "not-found", "no such export file")
        return Response(job["files"][rtype], status=200, mimetype=NDJSON)
