"""FHIR search in memory: the part of FHIR R4 search that our prefetch templates and the CDS Hooks sandbox use.

It runs over a plain list of raw resources (dicts) and serves the dev ``/fhir`` endpoint,
the prefetch built for scenario requests, and tests. Parameters (``params`` is a query
string or a list of ``(name, value)`` pairs; a name given twice is ANDed, comma-separated
values are ORed):

* ``_id``;
* ``patient`` / ``subject``: ``Patient/<id>``, ``<id>`` or an absolute URL, matched on the
  resource's ``subject``, ``patient`` or ``beneficiary`` reference (``patient`` accepts
  Patient references only; a bare ``subject`` id matches any type);
* tokens ``code``, ``status``, ``clinical-status``, ``category``: ``system|code``, ``|code``
  (a coding without system), ``code`` (any system) or ``system|`` (any code of a system).
  Codes compare as exact strings, ICD-10-CM dots included (``G25.3`` is not ``G253``).
  ``code`` reads ``medicationCodeableConcept`` on MedicationRequest/MedicationStatement (a
  ``medicationReference`` is not matched, as on a real server);
* dates ``date`` (the type's own date, ``DATE_FIELDS``), ``recorded-date``, ``onset-date``,
  ``authoredon``, ``authored``, ``effective``, with prefixes ``eq`` (default), ``ne``,
  ``gt``, ``lt``, ``ge``, ``le``, ``sa``, ``eb`` and ``ap`` (taken as *overlaps*), compared
  as ranges by precision as the FHIR spec says; values without a time zone are UTC;
* ``_sort`` by any of the date names above, ``-`` for newest first (resources without the
  date go last); ``_count``; ``_offset`` (this module's paging parameter: entries to skip);
  ``_summary=count``; ``_include`` of ``MedicationRequest:medication``,
  ``MedicationStatement:medication``, ``<Type>:patient`` and ``<Type>:subject`` (the
  referenced resources of the returned page, with ``search.mode`` ``include``).

Any other parameter, modifier (``code:text``) or unsupported value is **ignored** and listed
in ``Result.ignored``; it is left out of the links, as a lenient FHIR server does. A
malformed value of a supported parameter (a bad date, ``_count=x``) raises ``SearchError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache, partial
from typing import Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode

__all__ = ["SearchError", "Result", "run", "search", "searchset", "parse_params", "reference_key",
           "search_params", "includes_for", "DATE_FIELDS", "RESULT_PARAMS"]


class SearchError(ValueError):
    """A supported search parameter has a value that cannot be used (HTTP 400)."""


# -- what each parameter reads ------------------------------------------------------------

# The element ``code`` searches, where it is not ``code``.
_CODE_FIELDS = {"MedicationRequest": "medicationCodeableConcept", "MedicationStatement": "medicationCodeableConcept"}
_TOKEN_FIELDS = {"status": "status", "clinical-status": "clinicalStatus", "category": "category"}
_REFERENCE_FIELDS = ("subject", "patient", "beneficiary")

# The type's own date for ``date`` and for sorting, first present wins. ``x[]`` is a choice element.
DATE_FIELDS: dict[str, tuple[str, ...]] = {
    "Observation": ("effective[]", "issued"),
    "DiagnosticReport": ("effective[]", "issued"),
    "Procedure": ("performed[]",),
    "Condition": ("recordedDate", "onset[]"),
    "AllergyIntolerance": ("recordedDate", "onset[]"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effective[]", "dateAsserted"),
    "ServiceRequest": ("authoredOn", "occurrence[]"),
    "Encounter": ("period",),
    "Immunization": ("occurrence[]", "recorded"),
}
_NAMED_DATES: dict[str, tuple[str, ...]] = {
    "recorded-date": ("recordedDate",),
    "onset-date": ("onset[]",),
    "authoredon": ("authoredOn",),
    "authored": ("authoredOn",),
    "effective": ("effective[]",),
}
_CHOICE_SUFFIXES = ("DateTime", "Period", "Instant", "Date")
_INCLUDES = {"medication": ("medicationReference",), "patient": ("subject", "patient"), "subject": ("subject",)}

# Parameters that shape the result rather than filter it, with their FHIR search types.
RESULT_PARAMS: dict[str, str] = {"_sort": "special", "_count": "number", "_offset": "number", "_summary": "special"}

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_MIN = datetime.min.replace(tzinfo=timezone.utc)
_MAX = datetime.max.replace(tzinfo=timezone.utc)

Interval = tuple[datetime, datetime]  # [low, high)


# -- values ---------------------------------------------------------------------------------

def reference_key(reference: str) -> str | None:
    """``Type/id`` at the end of a relative or absolute reference (None for ``#x``, ``urn:``, conditional ones)."""
    if reference.startswith(("#", "urn:")) or "?" in reference:
        return None
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return f"{parts[-2]}/{parts[-1]}"
    return None


def _interval(text: str) -> Interval | None:
    """The range a FHIR date, dateTime or instant stands for, by its precision; None when not a date."""
    m = _DATE.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        if month is None:
            lo = datetime(int(year), 1, 1, tzinfo=timezone.utc)
            return lo, lo.replace(year=lo.year + 1) if lo.year < 9999 else _MAX
        if day is None:
            lo = datetime(int(year), int(month), 1, tzinfo=timezone.utc)
            hi = lo.replace(year=lo.year + 1, month=1) if lo.month == 12 else lo.replace(month=lo.month + 1)
            return lo, hi
        if hour is None:
            lo = datetime(int(year), int(month), int(day), tzinfo=timezone.utc)
            return lo, lo + timedelta(days=1)
        tz = timezone.utc
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        micro = int(round(float(fraction) * 1_000_000)) if fraction else 0
        lo = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                      min(micro, 999_999), tzinfo=tz).astimezone(timezone.utc)
        step = timedelta(minutes=1) if second is None else timedelta(seconds=1) if not fraction else \
            timedelta(milliseconds=1)
        return lo, lo + step
    except ValueError:
        return None


def _value_interval(value: object) -> Interval | None:
    if isinstance(value, str):
        return _interval(value)
    if isinstance(value, dict):  # Period
        start = _interval(value["start"]) if isinstance(value.get("start"), str) else None
        end = _interval(value["end"]) if isinstance(value.get("end"), str) else None
        if start is None and end is None:
            return None
        return (start[0] if start else _MIN), (end[1] if end else _MAX)
    return None


def _field(resource: dict, name: str) -> object:
    if name.endswith("[]"):
        stem = name[:-2]
        for suffix in _CHOICE_SUFFIXES:
            if stem + suffix in resource:
                return resource[stem + suffix]
        return None
    return resource.get(name)


def _date_of(resource: dict, fields: Sequence[str]) -> Interval | None:
    for name in fields:
        found = _value_interval(_field(resource, name))
        if found is not None:
            return found
    return None


def _date_test(prefix: str, p: Interval) -> Callable[[Interval], bool]:
    tests: dict[str, Callable[[Interval], bool]] = {
        "eq": lambda r: p[0] <= r[0] and r[1] <= p[1],
        "ne": lambda r: not (p[0] <= r[0] and r[1] <= p[1]),
        "gt": lambda r: r[1] > p[1],
        "lt": lambda r: r[0] < p[0],
        "ge": lambda r: r[1] > p[1] or (p[0] <= r[0] and r[1] <= p[1]),
        "le": lambda r: r[0] < p[0] or (p[0] <= r[0] and r[1] <= p[1]),
        "sa": lambda r: r[0] >= p[1],
        "eb": lambda r: r[1] <= p[0],
        "ap": lambda r: r[0] < p[1] and r[1] > p[0],
    }
    return tests[prefix]


def _split(value: str) -> list[str]:
    """Comma-separated values, ``\\,`` and ``\\|`` escapes kept literal; empty parts dropped."""
    return list(_split_cached(value))


@lru_cache(maxsize=4096)
def _split_cached(value: str) -> tuple[str, ...]:
    # the same code lists come with every call of a service (its prefetch templates): split once
    return tuple(v.replace("\\,", ",") for v in re.split(r"(?<!\\),", value) if v)


@lru_cache(maxsize=65536)
def _token(value: str) -> tuple[str | None, str | None]:
    """``(system, code)``: system None = any system, "" = no system; code None = any code."""
    parts = re.split(r"(?<!\\)\|", value, maxsplit=1)
    if len(parts) == 1:
        return None, parts[0].replace("\\|", "|")
    system, code = (p.replace("\\|", "|") for p in parts)
    return system, (code or None)


def _id_in(ids: set[str], resource: dict) -> bool:
    return resource.get("id") in ids


def _element_matches(tokens: list, element: str, resource: dict) -> bool:
    return _token_matches(tokens, resource.get(element))


def _token_matches(tokens: list[tuple[str | None, str | None]], value: object) -> bool:
    if isinstance(value, list):
        return any(_token_matches(tokens, v) for v in value)
    if isinstance(value, str):  # a code element: its system is implicit
        return any(code is not None and code == value for _, code in tokens)
    if not isinstance(value, dict):
        return False
    codings: list = value["coding"] if isinstance(value.get("coding"), list) else [value]
    for coding in codings:
        if not isinstance(coding, dict):
            continue
        system, code = coding.get("system"), coding.get("code")
        for want_system, want_code in tokens:
            if want_code is not None and code != want_code:
                continue
            if want_system is None or (want_system == "" and not system) or want_system == system:
                return True
    return False


# -- parsing parameters ---------------------------------------------------------------------

def parse_params(params: str | Iterable[tuple[str, str]] | Mapping[str, str]) -> list[tuple[str, str]]:
    """``(name, value)`` pairs from a query string (a leading ``?`` allowed), pairs or a mapping."""
    if isinstance(params, str):
        return parse_qsl(params.lstrip("?"), keep_blank_values=True)
    if isinstance(params, Mapping):
        return [(str(k), str(v)) for k, v in params.items()]
    return [(str(k), str(v)) for k, v in params]


@dataclass
class Result:
    """One search: the page of matches, the included resources, and what was understood."""

    resource_type: str
    matches: list[dict]
    included: list[dict]
    total: int
    offset: int
    count: int | None
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def next_offset(self) -> int | None:
        """Where the next page starts, or None on the last page."""
        if self.count is None or self.count == 0:
            return None
        nxt = self.offset + self.count
        return nxt if nxt < self.total else None

    def query(self, offset: int | None = None) -> str:
        """The query string of this search (understood parameters only) at ``offset``."""
        pairs = [(k, v) for k, v in self.used if k != "_offset"]
        start = self.offset if offset is None else offset
        if start:
            pairs.append(("_offset", str(start)))
        return urlencode(pairs, safe=":/,")


def _int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise SearchError(f"{name} must be a whole number, not {value!r}") from None
    if n < 0:
        raise SearchError(f"{name} must not be negative")
    return n


def run(resources: Iterable[dict], resource_type: str, params: str | Iterable[tuple[str, str]] = (),
        *, lookup: Mapping[str, dict] | None = None) -> Result:
    """Search ``resources`` (of any types) for ``resource_type`` with ``params``.

    ``lookup`` maps ``Type/id`` to resources for ``_include`` (default: built from ``resources``).
    """
    pool = list(resources)
    candidates = [r for r in pool if r.get("resourceType") == resource_type]
    tests: list[Callable[[dict], bool]] = []
    used: list[tuple[str, str]] = []
    ignored: list[str] = []
    sort: list[tuple[tuple[str, ...], bool]] = []
    includes: list[tuple[str, ...]] = []
    count: int | None = None
    summary_count = False
    offset = 0
    for name, value in parse_params(params):
        if value == "":
            continue
        understood = True
        if name == "_id":
            ids = set(_split(value))
            tests.append(partial(_id_in, ids))
        elif name in ("patient", "subject"):
            tests.append(_reference_test(name, _split(value)))
        elif name == "code" or name in _TOKEN_FIELDS:
            element = _CODE_FIELDS.get(resource_type, "code") if name == "code" else _TOKEN_FIELDS[name]
            tokens = [_token(v) for v in _split(value)]
            tests.append(partial(_element_matches, tokens, element))
        elif name == "date" or name in _NAMED_DATES:
            tests.append(_date_filter(name, resource_type, value))
        elif name == "_sort":
            keys = []
            for key in _split(value):
                desc, bare = key.startswith("-"), key.lstrip("-")
                if bare == "date" or bare in _NAMED_DATES:
                    keys.append((_date_fields(bare, resource_type, fallback=True), desc))
                else:
                    ignored.append(f"_sort={key}")
            understood = bool(keys)
            sort = keys or sort
        elif name == "_count":
            count = _int(name, value)
        elif name == "_offset":
            offset = _int(name, value)
        elif name == "_summary" and value == "count":
            summary_count = True
        elif name == "_include":
            source, _, rest = value.partition(":")
            param = rest.split(":")[0]
            understood = source == resource_type and param in _INCLUDES
            if understood:
                includes.append(_INCLUDES[param])
        else:
            understood = False
        if understood:
            used.append((name, value))
        elif name != "_sort":
            ignored.append(name)
    if summary_count:
        count = 0
    matches = [r for r in candidates if all(t(r) for t in tests)]
    for fields, desc in reversed(sort):
        matches = _sorted(matches, fields, desc)
    total = len(matches)
    page = matches[offset:] if count is None else matches[offset:offset + count]
    included = _included(page, includes, lookup if lookup is not None else _index(pool)) if includes else []
    return Result(resource_type, page, included, total, offset, count, used, ignored)


def _reference_test(name: str, values: list[str]) -> Callable[[dict], bool]:
    keys: set[str] = set()
    bare: set[str] = set()
    for v in values:
        key = reference_key(v)
        if key is not None:
            keys.add(key)
        elif name == "patient":
            keys.add(f"Patient/{v}")
        else:
            bare.add(v)

    def test(resource: dict) -> bool:
        for element in _REFERENCE_FIELDS:
            ref = resource.get(element)
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                key = reference_key(ref["reference"])
                if key is None:
                    continue
                if name == "patient" and not key.startswith("Patient/"):
                    continue
                if key in keys or key.split("/", 1)[1] in bare:
                    return True
        return False

    return test


def _date_fields(name: str, resource_type: str, *, fallback: bool = False) -> tuple[str, ...]:
    own = DATE_FIELDS.get(resource_type, ())
    if name == "date":
        return own
    named = _NAMED_DATES[name]
    return named + tuple(f for f in own if f not in named) if fallback else named


def _date_filter(name: str, resource_type: str, value: str) -> Callable[[dict], bool]:
    fields = _date_fields(name, resource_type)
    alternatives = []
    for part in _split(value):
        prefix = part[:2] if part[:2] in _PREFIXES else "eq"
        text = part[2:] if part[:2] in _PREFIXES else part
        interval = _interval(text)
        if interval is None:
            raise SearchError(f"{name}: not a FHIR date {part!r}")
        alternatives.append(_date_test(prefix, interval))

    def test(resource: dict) -> bool:
        found = _date_of(resource, fields)
        return found is not None and any(t(found) for t in alternatives)

    return test


def _sorted(resources: list[dict], fields: tuple[str, ...], desc: bool) -> list[dict]:
    dated = [(r, _date_of(r, fields)) for r in resources]
    have = [(r, d) for r, d in dated if d is not None]
    missing = [r for r, d in dated if d is None]
    have.sort(key=lambda pair: pair[1][0], reverse=desc)  # stable: equal dates keep their order
    return [r for r, _ in have] + missing


def _index(pool: list[dict]) -> dict[str, dict]:
    return {f"{r['resourceType']}/{r['id']}": r for r in pool if isinstance(r.get("id"), str)}


def _included(page: list[dict], includes: list[tuple[str, ...]], lookup: Mapping[str, dict]) -> list[dict]:
    seen = {f"{r.get('resourceType')}/{r.get('id')}" for r in page}
    out: list[dict] = []
    for resource in page:
        for elements in includes:
            for element in elements:
                ref = resource.get(element)
                key = reference_key(ref["reference"]) if isinstance(ref, dict) and isinstance(
                    ref.get("reference"), str) else None
                if key and key not in seen and key in lookup:
                    seen.add(key)
                    out.append(lookup[key])
    return out


def search_params(resource_type: str) -> dict[str, str]:
    """The filter parameters that apply to ``resource_type``, with their FHIR search types (CapabilityStatement)."""
    if resource_type == "Patient":
        return {"_id": "token"}
    out = {"_id": "token", "patient": "reference", "subject": "reference", "code": "token", "status": "token",
           "category": "token"}
    if resource_type in ("Condition", "AllergyIntolerance"):
        out["clinical-status"] = "token"
    own = DATE_FIELDS.get(resource_type, ())
    if own:
        out["date"] = "date"
        out.update({name: "date" for name, fields in _NAMED_DATES.items() if fields[0] in own})
    return out


def includes_for(resource_type: str) -> list[str]:
    """The ``_include`` values understood for ``resource_type``."""
    names = ["medication"] if resource_type in _CODE_FIELDS else []
    return [f"{resource_type}:{n}" for n in [*names, "patient", "subject"]] if resource_type != "Patient" else []


def search(resources: Iterable[dict], resource_type: str, params: str | Iterable[tuple[str, str]] = ()) -> list[dict]:
    """The matching resources of ``resource_type`` (one page when ``_count`` is given; no includes)."""
    return run(resources, resource_type, params).matches


# -- Bundles --------------------------------------------------------------------------------

def searchset(resources: Sequence[dict], total: int, next_url: str | None = None, *,
              included: Sequence[dict] = (), base_url: str | None = None, self_url: str | None = None) -> dict:
    """A ``searchset`` Bundle: the matches, then the included resources (``search.mode`` ``include``).

    ``fullUrl`` is ``{base_url}/{Type}/{id}`` when ``base_url`` is given (it must then be the
    server's absolute base); without one entries carry no ``fullUrl``.
    """
    def entry(resource: dict, mode: str) -> dict:
        out: dict = {}
        if base_url and isinstance(resource.get("id"), str):
            out["fullUrl"] = f"{base_url.rstrip('/')}/{resource['resourceType']}/{resource['id']}"
        out["resource"] = resource
        out["search"] = {"mode": mode}
        return out

    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": total}
    links = [{"relation": "self", "url": self_url}] if self_url else []
    if next_url:
        links.append({"relation": "next", "url": next_url})
    if links:
        bundle["link"] = links
    bundle["entry"] = [entry(r, "match") for r in resources] + [entry(r, "include") for r in included]
    return bundle
