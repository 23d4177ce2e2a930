"""OpenAPI: the service's HTTP contract as an OpenAPI 3.1 document, served at ``GET /openapi.json``.

Built from the JSON Schemas in ``schemas/`` (the ones requests are validated with), so the
contract and the validation cannot drift apart: each schema becomes a component (its
``#/$defs/...`` references re-rooted under the component), and each service of the engine
gets its own paths with its hook's context schema. Every error answer is a FHIR
OperationOutcome.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["document", "SCHEMA_COMPONENTS"]

# schema file -> component name
SCHEMA_COMPONENTS = {
    "discovery": "Discovery",
    "hook-request": "HookRequest",
    "hook-response": "HookResponse",
    "feedback": "Feedback",
    "context-patient-view": "ContextPatientView",
    "context-order-select": "ContextOrderSelect",
    "context-order-sign": "ContextOrderSign",
}

_OUTCOME = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["severity", "code"],
            "properties": {"severity": {"enum": ["fatal", "error", "warning", "information"]},
                           "code": {"type": "string"}, "diagnostics": {"type": "string"},
                           "expression": {"type": "array", "items": {"type": "string"}}}}},
    },
}
_FEEDBACK_COUNTS = {
    "type": "object", "required": ["stored", "duplicates", "unknownCards"],
    "properties": {k: {"type": "integer", "minimum": 0} for k in ("stored", "duplicates", "unknownCards")},
}
_FHIR_JSON = ("application/json", "application/fhir+json")


def _rerooted(value: Any, component: str) -> Any:
    """``value`` with ``#/$defs/X`` references pointing into ``#/components/schemas/<component>/$defs/X``."""
    if isinstance(value, dict):
        out = {k: _rerooted(v, component) for k, v in value.items() if k not in ("$id", "$schema")}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            out["$ref"] = f"#/components/schemas/{component}/{ref[2:]}"
        return out
    if isinstance(value, list):
        return [_rerooted(v, component) for v in value]
    return value


@cache
def _components() -> dict[str, Any]:
    folder = resources.files("cdshooks.service.schemas")
    schemas = {name: _rerooted(json.loads(folder.joinpath(f"{file}.json").read_text("utf-8")), name)
               for file, name in SCHEMA_COMPONENTS.items()}
    schemas["OperationOutcome"] = _OUTCOME
    schemas["FeedbackCounts"] = _FEEDBACK_COUNTS
    return schemas


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _outcome(description: str) -> dict:
    return {"description": description, "content": {t: {"schema": _ref("OperationOutcome")} for t in _FHIR_JSON[:1]}}


def _errors(*codes: int) -> dict[str, dict]:
    text = {400: "The request is not valid (the OperationOutcome names the field)",
            401: "Missing or invalid client JWT", 404: "Unknown CDS service",
            412: "Data the rules need could not be obtained (the OperationOutcome names the prefetch keys)",
            413: "The body is larger than the service accepts",
            503: "The service cannot answer now (its database does not answer)"}
    return {str(c): _outcome(text[c]) for c in codes}


def _context_component(hook: str) -> str:
    return SCHEMA_COMPONENTS[f"context-{hook}"]


def document(services: list[dict], server_url: str, version: str, authenticated: bool = True) -> dict:
    """The OpenAPI 3.1 document for ``services`` (discovery entries: ``id``, ``hook``, ``title``).

    ``authenticated``: calls need a client JWT (``CDSHOOKS_AUTH=required``); with authentication
    off the document says so by requiring nothing (and documents no 401).
    """
    paths: dict[str, dict] = {
        "/cds-services": {"get": {
            "operationId": "discovery", "summary": "CDS Hooks discovery: the services and their prefetch templates",
            "responses": {"200": {"description": "The services",
                                  "content": {"application/json": {"schema": _ref("Discovery")}}},
                          **_errors(401)}}},
    }
    for service in services:
        sid, hook = service["id"], service["hook"]
        request_schema = {"allOf": [_ref("HookRequest"), {
            "properties": {"hook": {"const": hook}, "context": _ref(_context_component(hook))}}]}
        paths[f"/cds-services/{sid}"] = {"post": {
            "operationId": f"call-{sid}", "summary": f"{hook}: {service.get('title', sid)}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}},
            "responses": {"200": {"description": "The cards",
                                  "content": {"application/json": {"schema": _ref("HookResponse")}}},
                          **_errors(400, 401, 412, 413, 503)}}}
        paths[f"/cds-services/{sid}/feedback"] = {"post": {
            "operationId": f"feedback-{sid}", "summary": f"Feedback on cards {sid} issued",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Feedback")}}},
            "responses": {"200": {"description": "Counts of stored, duplicate and unknown-card items",
                                  "content": {"application/json": {"schema": _ref("FeedbackCounts")}}},
                          **_errors(400, 401, 413, 503)}}}
    for path, summary in (("/healthz/live", "Liveness: the process answers (the database is not consulted)"),
                          ("/healthz/ready", "Readiness: the service and its database answer")):
        ok = {"description": "Live" if path.endswith("live") else "Ready", "content": {"application/json": {
            "schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}}}}
        responses = {"200": ok, **(_errors(503) if path.endswith("ready") else {})}
        paths[path] = {"get": {"operationId": path.strip("/").replace("/", "-"), "summary": summary, "security": [],
                               "responses": responses}}
    if not authenticated:
        for operations in paths.values():
            for operation in operations.values():
                operation["responses"].pop("401", None)
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Muscle twitching (fasciculations) CDS Hooks 2.0 service", "version": version,
                 "description": "CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/) over FHIR R4. Unknown request "
                                "fields and extension objects are ignored; every non-2xx answer is a FHIR "
                                "OperationOutcome."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": server_url}],
        "security": [{"clientJwt": []}],
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(_components()),
            "securitySchemes": {"clientJwt": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "CDS Hooks 2.0 'Trusting CDS Clients': a JWT signed by the EHR, aud = the URL "
                               "called, a new jti each call"}},
        },
    }
    if not authenticated:
        doc["security"] = []
    return doc
