"""Playground: a page to try the service on a FHIR Bundle and see its cards as an EHR would show them.

Development only: the app registers ``blueprint()`` only when ``CDSHOOKS_ENV`` is not
``production``, and every route answers 404 if it finds itself in a production app anyway.

    GET  /                              the page (cdshooks/static/playground.html, .js, .css)
    GET  /playground/static/<file>      its script and style sheet
    GET  /playground/fixtures           the scenarios: {"fixtures": [{name, hook, patient, description,
                                        selections?}]} from fhir_fixtures/ and CDSHOOKS_FIXTURES_DIR
    GET  /playground/fixtures/<name>    a scenario's Bundle, relative dates resolved to now
    POST /playground/evaluate?hook=H[&patient=ID][&selections=Type/id,...][&now=ISO 8601]
                                        a Bundle (or resource) in; {"request": the hook request built from
                                        it, "response": the service's response, "reading": resources
                                        read, sent, dropped, unreadable} out; nothing recorded as issued

``evaluate`` builds the request as ``cdshooks evaluate`` does (``batch.hook_request``: the
service's prefetch templates over the Bundle, its draft orders as ``draftOrders``) and hands
it to the engine of this app, so the cards are the ones the service gives that request.
Bad input is a 400 OperationOutcome. The page is static (no build step, nothing fetched
from another origin) and is served with a Content-Security-Policy that allows only this
origin's script, style and calls.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_from_directory

from ..service.engine import SERVICE_IDS
from ..service.errors import InvalidRequest, UnknownService
from ..service.hook_request import InputError, NoDraftOrders, SeveralPatients, hook_request, parse_now, reading
from .fixtures import FIXTURES_DIR, Scenario, scenarios

__all__ = ["blueprint", "STATIC_DIR", "CSP"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _settings():
    return current_app.extensions["cdshooks"].settings


def _scenarios() -> list[Scenario]:
    return scenarios(FIXTURES_DIR, _settings().fixtures_dir or None)


def _listing(s: Scenario) -> dict:
    item: dict[str, object] = {"name": s.name, "hook": s.hook, "patient": s.patient, "description": s.description}
    if s.selections is not None:
        item["selections"] = list(s.selections)
    return item


def _body() -> object:
    raw = request.get_data(cache=False)
    if not raw:
        raise InvalidRequest("The request body is empty; send a FHIR Bundle", expression=["(body)"])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not JSON", expression=["(body)"]) from None


def blueprint() -> Blueprint:
    """The playground's routes (see the module docstring)."""
    bp = Blueprint("playground", __name__, static_folder=str(STATIC_DIR), static_url_path="/playground/static")

    @bp.before_request
    def _not_in_production():
        if _settings().production:
            abort(404)

    @bp.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @bp.get("/")
    def page() -> Response:
        return send_from_directory(STATIC_DIR, "playground.html", mimetype="text/html")

    @bp.get("/playground/fixtures")
    def fixture_list() -> Response:
        return jsonify({"fixtures": [_listing(s) for s in _scenarios()]})

    @bp.get("/playground/fixtures/<path:name>")
    def fixture(name: str) -> Response:
        found = next((s for s in _scenarios() if s.name == name), None)
        if found is None:
            raise UnknownService(f"No fixture named {name!r}")
        bundle = found.bundle(datetime.now(timezone.utc))
        return Response(json.dumps(bundle), mimetype="application/fhir+json")

    @bp.post("/playground/evaluate")
    def evaluate() -> Response:
        hook = request.args.get("hook", "patient-view")
        patient = request.args.get("patient") or None
        chosen = request.args.get("selections")
        engine = current_app.extensions["cdshooks"].engine
        try:
            now = parse_now(request.args["now"]) if request.args.get("now") else datetime.now(timezone.utc)
            data = _body()
            templates = engine.services[SERVICE_IDS[hook]].prefetch if hook in SERVICE_IDS else {}
            built = hook_request(data, hook, templates, now=now, patient_id=patient, what="the Bundle",
                                 selections=[s for s in chosen.split(",") if s] if chosen else None)
        except SeveralPatients as exc:
            raise InvalidRequest(f"{exc}; enter one of them in Patient id", expression=["patient"]) from None
        except NoDraftOrders as exc:
            raise InvalidRequest(str(exc), expression=["hook"]) from None
        except InputError as exc:
            raise InvalidRequest(str(exc)) from None
        # a try, not a clinician's chart: its cards are not recorded as issued (feedback-report stays true)
        response = engine.outcome(SERVICE_IDS[hook], built, now=now, record_issued=False).body()
        return jsonify({"request": built, "response": response, "reading": reading(data, built)})

    return bp
