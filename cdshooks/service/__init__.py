"""The CDS Hooks protocol: HTTP endpoints, the engine, prefetch, validation, errors and the JSON Schemas.

The request path: ``endpoints`` (HTTP) -> ``engine`` (validation, ``prefetch``, the record, the
rules, de-duplication) -> ``endpoints``. ``hook_request`` builds requests from FHIR data as a client would.
"""

from .engine import SERVICE_IDS, Engine
from .errors import DataUnobtainable, InvalidRequest, ServiceError, Unauthenticated, UnknownService, operation_outcome
from .hook_request import InputError, build_request, hook_request
from .prefetch import expand_template, gather, templates_for
from .validation import validate

__all__ = ["SERVICE_IDS", "Engine", "DataUnobtainable", "InvalidRequest", "ServiceError", "Unauthenticated",
           "UnknownService", "operation_outcome", "InputError", "build_request", "hook_request", "expand_template",
           "gather", "templates_for", "validate"]
