"""FHIR models: the only module that imports ``fhir.resources``.

R4B models parse R4 data for every resource type this service reads. Reading is
tolerant, writing is strict:

* ``read(resource)`` validates a resource received from a client or a server and, when
  validation fails, repairs exactly the elements the errors name, then validates again
  (a few passes at most). Where the intent is unambiguous the element is repaired: one
  object where a list belongs becomes a one-item list; a one-item list where a single
  value belongs becomes that value. Any other faulty element is dropped, alone: the rest
  of the resource is kept. A bare string where a CodeableConcept belongs is read as its
  ``text`` (``"code": "2601-3"``), except a Condition's ``clinicalStatus`` /
  ``verificationStatus``, whose codes are a small fixed code system: a string equal to one
  of those codes is read as that code, any other string is dropped (the Condition is then
  in doubt, never active by default). A required element that is missing cannot be repaired; the
  resource is then still read as JSON (``Reading.model`` is None). Each problem is named
  by its element path (``MedicationRequest.category``), never by its value.
* ``parse(resource)`` and ``validation_errors(resource)`` are strict: suggested
  resources built by this service are checked with them and must be valid R4 as they are.

Reading is fast for what recurs. Validating a resource with the models costs 50-300 µs, and most
resources a call reads are valid and shaped like many before them. A resource's *shape* (its
element names in order, each value's JSON type, list lengths, contained resources' types)
decides every check the models make but one: each primitive value's own (a code's pattern, a
date's format, a decimal's digits), which pydantic runs alone in about a microsecond. So once a
resource of some shape has validated clean, a later one of the same shape is valid exactly when
each of its primitive values passes its element type's check (``_Plan``); only then is the
model not built (``Reading.model`` builds it on first use). Anything else takes the full path.
Shapes hold element names and resource types, never values.

Element order decides nothing the models check (a JSON object's members are named, not placed),
so a shape met for the first time whose elements are those of a learnt shape in another order
(servers and EHRs each write their own order) is not validated again: its checks are listed for
its order and its values checked, as for any known shape.
"""

from __future__ import annotations

import copy
import re
import threading
import types
import typing
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase
from pydantic import TypeAdapter, ValidationError

__all__ = ["parse", "validation_errors", "invalid_paths", "read", "Reading", "Problem", "preload", "Model"]

Model = Any  # a fhir.resources R4B model instance

# Validation passes per resource: each pass repairs every element its errors name.
MAX_PASSES = 4


def _model_class(resource_type: str):
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def preload(resource_types: typing.Iterable[str]) -> int:
    """Import the model classes of ``resource_types`` and of every element type they can contain.

    ``fhir.resources`` imports an element's class (Period, Range, Dosage...) the first time a
    resource carrying one is validated; start-up calls this so that no hook call pays for it,
    nor for building the fast path's check of each primitive element.
    Returns how many classes were loaded.
    """
    seen: set[str] = set()

    def walk(cls: Any) -> None:
        for spec in getattr(cls, "model_fields", {}).values():
            if not _complex(spec.annotation):
                try:
                    _check(spec.annotation)  # the fast path's check of this primitive element, built now
                except Exception:  # an annotation pydantic cannot check alone: the full path reads it
                    continue
            for arg in typing.get_args(spec.annotation) or (spec.annotation,):
                for kind in typing.get_args(arg) or (arg,):
                    if isinstance(kind, type) and issubclass(kind, FhirBase) and kind.__name__ not in seen:
                        seen.add(kind.__name__)
                        try:
                            walk(kind.get_model_klass())
                        except (ImportError, AttributeError, KeyError, ValueError):
                            continue

    for resource_type in resource_types:
        cls = _model_class(resource_type)
        if cls is not None and resource_type not in seen:
            seen.add(resource_type)
            walk(cls)
    return len(seen)


def parse(resource: dict) -> Model | None:
    """Build the R4B model for one raw resource, or ``None`` when it is not valid FHIR (strict)."""
    if not isinstance(resource, dict):
        return None
    cls = _model_class(str(resource.get("resourceType", "")))
    if cls is None:
        return None
    try:
        return cls.model_validate(resource)
    except Exception:  # ValidationError, or the model library failing on odd input
        return None


def validation_errors(resource: dict) -> list[str]:
    """Why a resource is not valid FHIR R4 (empty when it is). Used for our own suggestions and by tests."""
    if not isinstance(resource, dict):
        return ["not a JSON object"]
    cls = _model_class(str(resource.get("resourceType", "")))
    if cls is None:
        return [f"unknown resourceType {resource.get('resourceType')!r}"]
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
    except Exception as exc:
        return [type(exc).__name__]
    return []


def invalid_paths(resource: dict) -> list[str]:
    """The element paths that make a resource invalid R4 (empty when it is valid); no values, for logs.
    A resource the fast path reads (see the module doc) is valid without building its model."""
    cls = _model_class(str(resource.get("resourceType", "")))
    if cls is None:
        return ["resourceType"]
    fast, shape = _fast(resource)
    if fast is not None:
        return []
    try:
        cls.model_validate(resource)
        if shape is not None:
            _learn(cls, resource, shape)
    except ValidationError as exc:
        return [_path(tuple(err["loc"])) or "(resource)" for err in exc.errors()]
    except Exception:
        return ["(resource)"]
    return []


@dataclass(frozen=True)
class Problem:
    """One element that was not valid R4: where (``MedicationRequest.category``) and what was done."""

    resource_type: str
    path: str
    action: str          # "wrapped in a list" | "unwrapped from a list" | "read as text" | "read as its code"
    #                      | "dropped" | "missing"

    def __str__(self) -> str:
        return f"{self.resource_type}.{self.path}: {self.action}"


@dataclass
class Reading:
    """A resource as read: its JSON (repaired where needed), its model when one could be built, its problems."""

    data: dict
    built: Model | None
    problems: list[Problem] = field(default_factory=list)
    lazy: bool = False  # valid, read on the fast path: the model is built when first asked for

    @property
    def model(self) -> Model | None:
        if self.lazy:
            self.built, self.lazy = parse(self.data), False
        return self.built


_ELEMENT_NAME = re.compile(r"_?[a-z][A-Za-z0-9]{0,63}")


def _path(loc: tuple, unknown_last: bool = False) -> str:
    """``category[0].coding`` for a pydantic location. Only names shaped like FHIR element names are
    written; an unknown element's own name (it comes from the client) never is."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = str(part)
        if (unknown_last and i == len(loc) - 1) or not _ELEMENT_NAME.fullmatch(name):
            name = "(unknown element)"
        out += f".{name}" if out else name
    return out


def _locate(data: object, loc: tuple) -> tuple[object, object] | None:
    """(container, key) of the element at ``loc``, or None when it is not there (any more)."""
    parent: object = data
    for part in loc[:-1]:
        if isinstance(parent, dict) and isinstance(part, str) and part in parent:
            parent = parent[part]
        elif isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent):
            parent = parent[part]
        else:
            return None
    last = loc[-1]
    if isinstance(parent, dict) and isinstance(last, str) and last in parent:
        return parent, last
    if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        return parent, last
    return None


# Condition statuses whose codes are a small fixed code system: a bare string equal to one of them is
# read as that code; any other string there cannot be read (the element is dropped, the Condition is in
# doubt: see ``cards.clinical.findings.status_in_doubt``).
_STATUS_CODES = {
    ("Condition", "clinicalStatus"): ("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                      frozenset({"active", "recurrence", "relapse", "inactive", "remission",
                                                 "resolved"})),
    ("Condition", "verificationStatus"): ("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                          frozenset({"unconfirmed", "provisional", "differential", "confirmed",
                                                     "refuted", "entered-in-error"})),
}


def _element_type(cls: Any, loc: tuple) -> str | None:
    """The FHIR data type name (``CodeableConcept``) of the element at a pydantic location, or None."""
    current = cls
    name: str | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields:
            return None
        spec = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if spec is None:
            return None
        current, name = None, None
        pending = [spec.annotation]
        while pending:
            kind = pending.pop()
            if isinstance(kind, type) and hasattr(kind, "get_model_klass"):
                try:
                    current = kind.get_model_klass()
                except (ImportError, AttributeError, KeyError, ValueError):
                    return None
                name = current.__name__
                break
            pending.extend(typing.get_args(kind))
        if current is None:
            return None
    return name


def _string_concept(rtype: str, loc: tuple, text: str) -> tuple[dict | None, str]:
    """The CodeableConcept a bare string stands for, and the action to log (None: it cannot be read)."""
    status = _STATUS_CODES.get((rtype, loc[0])) if len(loc) == 1 else None
    if status is not None:
        system, codes = status
        code = text.strip().lower()
        if code in codes:
            return {"coding": [{"system": system, "code": code}]}, "read as its code"
        return None, "dropped"
    return ({"text": text.strip()}, "read as text") if text.strip() else (None, "dropped")


def _repair(data: dict, errors: list, rtype: str, problems: list[Problem], cls: Any = None) -> bool:
    """Repair or drop every element the errors name; whether anything changed."""
    changed = False
    drops: list[tuple[object, object, tuple, bool]] = []
    seen: set[tuple] = set()
    for err in errors:
        loc = tuple(err.get("loc") or ())
        while loc and loc[-1] in ("root", "__root__"):
            loc = loc[:-1]
        if not loc or loc in seen:
            continue
        seen.add(loc)
        kind = str(err.get("type", ""))
        if kind.endswith("missing"):
            problems.append(Problem(rtype, _path(loc), "missing"))
            continue
        where = _locate(data, loc)
        if where is None:
            continue
        parent, key = where
        value = parent[key]  # type: ignore[index]
        if kind == "list_type" and isinstance(value, dict):
            parent[key] = [value]  # type: ignore[index]
            problems.append(Problem(rtype, _path(loc), "wrapped in a list"))
            changed = True
        elif (kind in ("json_invalid", "model_type") and isinstance(value, str) and cls is not None
              and _element_type(cls, loc) == "CodeableConcept"):
            concept, action = _string_concept(rtype, loc, value)
            if concept is None:
                drops.append((parent, key, loc, False))
                continue
            parent[key] = concept  # type: ignore[index]
            problems.append(Problem(rtype, _path(loc), action))
            changed = True
        elif kind == "list_type" and isinstance(value, str) and cls is not None \
                and _element_type(cls, loc) == "CodeableConcept":
            parent[key] = [value]  # type: ignore[index]  # read as a text in the next pass
            problems.append(Problem(rtype, _path(loc), "wrapped in a list"))
            changed = True
        elif kind != "list_type" and isinstance(value, list) and len(value) == 1 and value[0] is not None:
            parent[key] = value[0]  # type: ignore[index]
            problems.append(Problem(rtype, _path(loc), "unwrapped from a list"))
            changed = True
        else:
            drops.append((parent, key, loc, kind == "extra_forbidden"))
    # drop list items from the highest index down, so earlier indexes stay right
    for parent, key, loc, unknown in sorted(drops, key=lambda d: d[1] if isinstance(d[1], int) else -1,
                                            reverse=True):
        try:
            del parent[key]  # type: ignore[attr-defined]
        except (KeyError, IndexError, TypeError):
            continue
        problems.append(Problem(rtype, _path(loc, unknown), "dropped"))
        changed = True
    return changed


# -- the fast path (see the module doc) ------------------------------------------------------
_NO_PLAN = False       # a shape whose primitive values cannot all be told a check: always the full path
_PLAN_LIMIT = 4096     # shapes remembered per process (element names and types only); past it the older half goes
_LEAF_LIMIT = 512      # a resource with more primitive values than this (a report with many contained results)
#                        is read the full way: its shape would cost more memory than its reading saves
_plans: dict[Any, Any] = {}  # shape -> the checks of its primitive values, or _NO_PLAN
_NAME = itemgetter(0)  # an object's (element name, shape) pairs sort by name
_unordered: dict[Any, bool] = {}  # shape with every object's elements sorted -> validated clean once
_checks: dict[int, tuple[object, Callable]] = {}   # id(annotation) -> (annotation, its validator)
_fields_of: dict[type, dict[str, Any]] = {}        # model class -> {JSON name: FieldInfo}
_learning = threading.Lock()


def _shape(value: Any, leaves: list) -> Any:
    """The shape of a JSON value (see the module doc); its primitive values go to ``leaves`` in order."""
    kind = value.__class__
    if kind is dict:
        rtype = value.get("resourceType")
        out: list = ["{", rtype if rtype.__class__ is str else None]
        for key, item in value.items():
            inner = item.__class__
            if inner is dict or inner is list:
                out.append((key, _shape(item, leaves)))
            else:  # a primitive, inline: most of a resource's elements
                leaves.append(item)
                out.append((key, inner))
        return tuple(out)
    if kind is list:
        out = ["["]
        for item in value:
            inner = item.__class__
            if inner is dict or inner is list:
                out.append(_shape(item, leaves))
            else:
                leaves.append(item)
                out.append(inner)
        return tuple(out)
    leaves.append(value)
    return kind


def _sorted_shape(shape: Any) -> Any:
    """``shape`` with each object's elements in name order (lists keep theirs): the shape of every
    resource that differs from it only in element order."""
    if shape.__class__ is not tuple:
        return shape
    if shape[0] == "{":
        return ("{", shape[1], *sorted(((key, _sorted_shape(inner)) for key, inner in shape[2:]),
                                       key=_NAME))
    return ("[", *(_sorted_shape(inner) for inner in shape[1:]))


def _check(annotation: Any) -> Callable:
    found = _checks.get(id(annotation))
    if found is None:
        # the adapter's core validator itself: the same check, without the adapter's call around it
        found = _checks[id(annotation)] = (annotation, TypeAdapter(annotation).validator.validate_python)
    return found[1]


def _complex(annotation: Any) -> bool:
    """Whether an element's type is (a list of) a complex type or resource, not a primitive."""
    for arg in typing.get_args(annotation) or (annotation,):
        for kind in typing.get_args(arg) or (arg,):
            if isinstance(kind, type) and issubclass(kind, FhirBase):
                return True
    return False


def _json_fields(cls: Any) -> dict[str, Any]:
    found = _fields_of.get(cls)
    if found is None:
        found = {}
        for name, info in cls.model_fields.items():
            found[name] = info
            if info.alias:
                found[info.alias] = info
        _fields_of[cls] = found
    return found


def _model_klass(annotation: Any) -> Any:
    """The model class of an element type (None for a primitive); ``_RESOURCE`` for any resource."""
    if not (isinstance(annotation, type) and issubclass(annotation, FhirBase)):
        return None
    try:
        klass = annotation.get_model_klass()
    except (ImportError, AttributeError, KeyError, ValueError):
        return None
    return _RESOURCE if klass.__name__ in ("Resource", "DomainResource") else klass


_RESOURCE = object()  # a contained resource: validated as its own type
_typed: dict[int, tuple[object, tuple]] = {}  # id(annotation) -> (annotation, what _plan_value needs of it)


def _typing(annotation: Any) -> tuple:
    """What ``_plan_value`` needs of an element's type, worked out once per type: ("?",) when it
    cannot be told, ("list", element type), or ("one", model class or None, the check of a primitive)."""
    found = _typed.get(id(annotation))
    if found is not None:
        return found[1]
    inner = annotation
    result: tuple
    if typing.get_origin(inner) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(inner) if a is not type(None)]
        inner = options[0] if len(options) == 1 else None
    if inner is None:
        result = ("?",)
    elif typing.get_origin(inner) is list:
        result = ("list", (typing.get_args(inner) or (None,))[0])
    else:
        klass = _model_klass(inner)
        result = ("one", klass, None)
        if klass is None:
            try:
                result = ("one", None, _check(annotation))
            except Exception:  # an annotation pydantic cannot check alone
                result = ("?",)
    _typed[id(annotation)] = (annotation, result)
    return result


def _plan_object(cls: Any, value: dict, out: list) -> bool:
    fields = _json_fields(cls)
    for key, item in value.items():
        if key == "resourceType":
            out.append(None)  # fixed by the shape
            continue
        info = fields.get(key)
        if info is None or not _plan_value(info.annotation, item, out):
            return False
    return True


def _plan_value(annotation: Any, item: Any, out: list) -> bool:
    """Append the check of each primitive value of ``item`` (a field of type ``annotation``); False
    when the type cannot be told."""
    if item is None:
        out.append(None)  # a null is allowed or not by the shape alone
        return True
    kind = _typing(annotation)
    if kind[0] == "list":
        return item.__class__ is list and all(_plan_value(kind[1], x, out) for x in item)
    if kind[0] != "one" or item.__class__ is list:
        return False
    klass = kind[1]
    if item.__class__ is dict:
        if klass is _RESOURCE:
            klass = _model_class(str(item.get("resourceType")))
        return klass is not None and _plan_object(klass, item, out)
    if klass is not None:
        return False
    out.append(kind[2])
    return True


def _learn(cls: Any, resource: dict, shape: Any, clean: bool = True) -> Any:
    """Remember the checks of a shape just validated clean (or that it has none to remember), and
    that its elements in any order are valid; with ``clean`` False, of a shape known valid in
    another order. Returns the plan."""
    plan = _plans.get(shape)
    if plan is not None:
        return plan
    checks: list = []
    try:
        plan = tuple(checks) if _plan_object(cls, resource, checks) else _NO_PLAN
    except Exception:  # an annotation pydantic cannot check alone: this shape takes the full path
        plan = _NO_PLAN
    unordered = _sorted_shape(shape) if clean else None
    with _learning:
        for known in (_plans, _unordered):
            if len(known) >= _PLAN_LIMIT:  # the half learnt first goes (a dict keeps insertion order)
                for old in list(known)[:_PLAN_LIMIT // 2]:
                    del known[old]
        if unordered is not None:
            _unordered[unordered] = True
        return _plans.setdefault(shape, plan)


def _reordered(resource: dict, shape: Any) -> Any:
    """The plan of a shape not met before whose elements are a learnt shape's in another order (see
    the module doc), learnt now; None when it is not."""
    try:
        if _sorted_shape(shape) not in _unordered:
            return None
    except TypeError:  # an element name that is not a string: never learnt
        return None
    cls = _model_class(str(resource.get("resourceType")))
    return None if cls is None else _learn(cls, resource, shape, clean=False)


def _fast(resource: dict) -> tuple[Reading | None, Any]:
    """(the reading, when the resource's shape is known and every primitive value passes; its shape)."""
    leaves: list = []
    try:
        shape = _shape(resource, leaves)
        if len(leaves) > _LEAF_LIMIT:
            return None, None
        plan = _plans.get(shape)
        if plan is None and _unordered:
            plan = _reordered(resource, shape)
    except (RecursionError, TypeError):
        return None, None
    if not plan or len(plan) != len(leaves):
        return None, shape
    try:
        for check, leaf in zip(plan, leaves):
            if check is not None:
                check(leaf)
    except (ValidationError, ValueError, TypeError, ArithmeticError):
        return None, shape
    return Reading(resource, None, [], lazy=True), shape


def read(resource: dict) -> Reading:
    """The resource as read (see the module doc). Never raises; the input is never changed."""
    fast, shape = _fast(resource)
    return fast if fast is not None else _read_fully(resource, shape)


def _read_fully(resource: dict, shape: Any = None) -> Reading:
    """``read`` by the models alone: validate, repair what the errors name, validate again. A shape
    that validates clean at once is learnt for the fast path."""
    rtype = str(resource.get("resourceType", ""))
    cls = _model_class(rtype)
    if cls is None:
        return Reading(resource, None, [Problem("Resource", "resourceType", "unknown")])  # never the client's text
    data = resource
    problems: list[Problem] = []
    for _ in range(MAX_PASSES):
        try:
            model = cls.model_validate(data)
            if data is resource and shape is not None:
                _learn(cls, resource, shape)
            return Reading(data, model, list(dict.fromkeys(problems)))
        except ValidationError as exc:
            errors = exc.errors()
        except Exception:  # the model library itself failed (e.g. a contained resource of unknown type)
            problems.append(Problem(rtype, "(resource)", "could not be validated"))
            break
        if data is resource:
            try:
                data = copy.deepcopy(resource)
            except RecursionError:
                break
        if not _repair(data, errors, rtype, problems, cls):
            break
    return Reading(data, None, list(dict.fromkeys(problems)))
