"""Validation: request and feedback bodies against the JSON Schemas shipped in ``schemas/``.

A failure becomes ``InvalidRequest`` (400) whose OperationOutcome names the field, e.g.
``context.patientId``. Unknown fields and ``extension`` objects are allowed everywhere.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import InvalidRequest

__all__ = ["validate", "validator"]


@cache
def validator(name: str) -> Draft202012Validator:
    text = resources.files("cdshooks.service.schemas").joinpath(f"{name}.json").read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _field(error: ValidationError, prefix: str) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path.append(missing)
    elif error.validator == "dependentRequired":
        path.append("fhirServer")
    return ".".join([p for p in [prefix, *path] if p]) or "(body)"


def _message(error: ValidationError, where: str) -> str:
    if error.validator == "required":
        return f"{where} is required"
    if error.validator == "dependentRequired":
        return "fhirServer is required when fhirAuthorization is present"
    if error.validator == "type":
        return f"{where} must be of type {error.validator_value}"
    if error.validator in ("const", "enum"):
        return f"{where} has a value that is not allowed"
    return f"{where} is invalid: {error.message[:200]}"


def validate(body: object, schema: str, prefix: str = "") -> None:
    """Raise InvalidRequest naming the first offending field of ``body``."""
    errors = list(validator(schema).iter_errors(body))
    if errors:
        # the shallowest problem first, and a missing or mistyped field before a conditional rule
        error = min(errors, key=lambda e: (len(e.absolute_path), e.validator not in ("required", "type")))
        where = _field(error, prefix)
        raise InvalidRequest(_message(error, where), expression=[where])
