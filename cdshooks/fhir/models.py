"""FHIR models: the only module that imports ``fhir.resources``.

R4B models parse R4 data for every resource type this service reads. Parsing is
lenient where real clients are known to be sloppy (a ``draftOrders`` Bundle
without ``type``) and strict everywhere else: a resource that fails validation is
reported as ``None`` and the caller counts it, it never fails a hook call.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

__all__ = ["parse", "validation_errors", "Model"]

Model = Any  # a fhir.resources R4B model instance


def _model_class(resource_type: str):
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def parse(resource: dict) -> Model | None:
    """Build the R4B model for one raw resource, or ``None`` when it is not valid FHIR."""
    if not isinstance(resource, dict):
        return None
    cls = _model_class(str(resource.get("resourceType", "")))
    if cls is None:
        return None
    try:
        return cls.model_validate(resource)
    except (ValidationError, ValueError, TypeError):
        return None


def validation_errors(resource: dict) -> list[str]:
    """Why a resource is not valid FHIR R4 (empty when it is). Used by tests and the playground."""
    if not isinstance(resource, dict):
        return ["not a JSON object"]
    cls = _model_class(str(resource.get("resourceType", "")))
    if cls is None:
        return [f"unknown resourceType {resource.get('resourceType')!r}"]
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
    except (ValueError, TypeError) as exc:
        return [str(exc)]
    return []
