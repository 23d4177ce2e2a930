"""Validation: request and feedback bodies against the JSON Schemas shipped in ``schemas/``.

A failure becomes ``InvalidRequest`` (400) whose OperationOutcome names the field, e.g.
``context.patientId``. Unknown fields and ``extension`` objects are allowed everywhere.

Each schema is also compiled to Python once (``fastjsonschema``, the schema's 2020-12 keywords
written in their draft-07 spelling, formats not asserted, as ``jsonschema`` does not assert
them): a valid body, the usual case, is accepted by the compiled check in microseconds. Only a
body the compiled check refuses goes through ``jsonschema``, which decides and names the field;
``tests/service/test_validation_compiled.py`` checks that both agree.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Callable

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import InvalidRequest

__all__ = ["validate", "validator", "compiled"]


def _schema(name: str) -> dict:
    return json.loads(resources.files("cdshooks.service.schemas").joinpath(f"{name}.json").read_text("utf-8"))


@cache
def validator(name: str) -> Draft202012Validator:
    schema = _schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _draft7(schema: Any) -> Any:
    """The schema in draft-07 spelling (``dependentRequired`` is draft-07's array ``dependencies``)."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "$schema":
                value = "http://json-schema.org/draft-07/schema#"
            elif key == "dependentRequired":
                key = "dependencies"
            out[key] = _draft7(value)
        return out
    if isinstance(schema, list):
        return [_draft7(v) for v in schema]
    return schema


@cache
def compiled(name: str) -> Callable[[object], object]:
    """The schema compiled to a Python function that raises ``JsonSchemaException`` on an invalid body."""
    return fastjsonschema.compile(_draft7(_schema(name)), use_formats=False)


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
    try:
        compiled(schema)(body)
        return
    except fastjsonschema.JsonSchemaException:
        pass  # jsonschema decides, and names the field
    errors = list(validator(schema).iter_errors(body))
    if errors:
        # the shallowest problem first, and a missing or mistyped field before a conditional rule
        error = min(errors, key=lambda e: (len(e.absolute_path), e.validator not in ("required", "type")))
        where = _field(error, prefix)
        raise InvalidRequest(_message(error, where), expression=[where])
