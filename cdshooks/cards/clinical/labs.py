"""Labs: the latest recent electrolyte results, whether they are low, and LGI1 antibodies.

"A lab result" (catalogue section 1) is an ``Observation`` with status ``final``,
``amended`` or ``corrected``, coded in the lab's value set, with a value and an
effective time (``effectiveDateTime``, ``effectivePeriod.end``, else ``issued``). It
may stand alone or sit inside a panel: an Observation contained in a
``DiagnosticReport`` (``result``) or a panel Observation (``hasMember``), which then
lends it its status and time when it has none. The latest is the newest effective
time inside the window (``dates.within``).

Values are read as labs report them: ``valueQuantity`` (with its ``comparator``),
``valueInteger``, or ``valueString`` holding a number with an optional comparator,
unit and flag ("<1.5", "> 10", "1.2 L", "3.1 mmol/L (L)"). A result whose value is
there but cannot be read (NaN, infinity, garbage, a coded value) is **a result that
could not be read**: it is the latest result all the same (``readable`` False), never
"no result". A result without any value (a ``dataAbsentReason`` only) is not a result.

A result coded only by a local code (an EHR's ``urn:oid:...`` system, no LOINC) cannot be
matched as the lab: its value is never used. But when its code's text or display names the
lab ("MAGNESIUM", ``LabSpec.words``) it leaves the lab **in doubt** (``lab_absent`` False):
no card says "no magnesium result" beside it.

"Low" is decided by the first criterion that can decide:

1. the reference range: ``referenceRange.low`` (the first range whose ``type`` is absent
   or ``normal``, whose ``low`` has the result's unit, no unit, or a unit both
   convertible), else the low end of a range given as text ("3.5-5.1 mmol/L", ">=1.7");
2. ``interpretation`` (or a flag written after a string value): ``L``/``LL``/``LU`` is
   low; ``N``/``H``/``HH``/``HU`` is not low (other codes, e.g. ``A``, do not decide);
3. the default limit of ``LABS`` after converting to the default unit. A value whose
   unit is not in ``LABS[lab].units`` has ``value_default`` None and is low only
   through 1 or 2.

A comparator makes the value a bound: ``<x`` is low when x is at most the limit,
``<=x`` when x is below it, ``>x`` / ``>=x`` is not low when x is at least the limit;
any other case cannot be told ("<5" potassium against 3.5): the result is then not
interpretable (``judged`` False), neither low nor normal.

Total calcium is corrected with an albumin (``albumin_lab``, g/dL or g/L) dated within
``albumin_days`` of it, the closest readable one: corrected = calcium mg/dL + 0.8 x (4.0 -
albumin g/dL). A corrected value is judged against the reference range (converted to
mg/dL) and then the 8.5 mg/dL limit; the lab's interpretation flag is not used then,
because it judged the uncorrected value (our choice: the catalogue is silent, and an
uncorrected flag with low albumin is the classic false low). Without an albumin the
measured value is judged as above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter

from ...fhir.record import Record
from ...fhir.terminology import ValueSet, valueset
from .dates import FUTURE_TOLERANCE, parse_text
from .elements import codes_of, first_time, items, number, one, readable, reference_of, text_of, words_of

__all__ = ["LabSpec", "LABS", "LabResult", "LabValue", "latest_lab", "latest_calcium", "calcium_low", "lab_absent",
           "Lgi1Result", "lgi1_results", "lgi1_positive", "lgi1_in_doubt", "RESULT_STATUSES", "read_value",
           "range_low_text"]

RESULT_STATUSES = {"final", "amended", "corrected"}
# Observation statuses that say plainly "not a result" (any other value, or none, leaves it unknown).
_NOT_RESULT_STATUSES = {"registered", "preliminary", "cancelled", "entered-in-error"}
_TIME_PATHS = ("effectiveDateTime", "effectivePeriod.end", "effectiveInstant", "issued")
_TIME_SHAPE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?(T|$)")
_SECOND = itemgetter(1)  # (result, time) pairs sort by time


@dataclass(frozen=True)
class LabSpec:
    """One lab of the catalogue table: value set, default unit and limit, accepted units."""

    name: str
    valueset: str
    unit: str                          # the default unit (UCUM, as shown in cards)
    units: dict[str, float]            # lower-case unit -> factor to the default unit
    limit: float | None                # the default low limit, in the default unit
    words: tuple[str, ...] = ()        # the words that name the lab in a display or text (a local code's)


LABS: dict[str, LabSpec] = {
    # potassium mg/dL (75940-7, mass in blood) -> mmol/L: x 10 / 39.098
    "potassium": LabSpec("potassium", "potassium_lab", "mmol/L", {"mmol/l": 1.0, "meq/l": 1.0, "mg/dl": 0.2558}, 3.5,
                         ("potassium",)),
    "magnesium": LabSpec("magnesium", "magnesium_lab", "mg/dL",
                         {"mg/dl": 1.0, "mmol/l": 2.431, "meq/l": 1.215}, 1.7, ("magnesium",)),
    "calcium": LabSpec("calcium", "calcium_total_lab", "mg/dL", {"mg/dl": 1.0, "mmol/l": 4.008, "meq/l": 2.004}, 8.5,
                       ("calcium",)),
    # mg/dL -> mmol/L divides by 4.008 (Ca 40.08 g/mol): serum ionized calcium is reported in mg/dL by some labs
    "calcium_ionized": LabSpec("calcium_ionized", "calcium_ionized_lab", "mmol/L",
                               {"mmol/l": 1.0, "mg/dl": 1 / 4.008, "meq/l": 0.5}, 1.12, ("calcium",)),
    "albumin": LabSpec("albumin", "albumin_lab", "g/dL", {"g/dl": 1.0, "g/l": 0.1}, None),
}

_LOW_FLAGS = {"L", "LL", "LU"}
_NOT_LOW_FLAGS = {"N", "H", "HH", "HU"}
_COMPARATORS = {"<", "<=", ">", ">="}
_UNICODE_COMPARATORS = {"\u2264": "<=", "\u2265": ">=", "=<": "<=", "=>": ">="}
_NUMBER = r"[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)"
_STRING_VALUE = re.compile(rf"^(<=|>=|=<|=>|<|>|\u2264|\u2265)?\s*({_NUMBER})\s*(.*?)\s*$")
_FLAG = re.compile(r"^[(\[*]?(LL|HH|L|H|N|A|AA|LU|HU)[)\]*]?$", re.I)
_RANGE_TEXT = re.compile(rf"^\s*({_NUMBER})\s*(?:-|\u2013|to)\s*({_NUMBER})\s*(.*?)\s*$", re.I)
_RANGE_FLOOR = re.compile(rf"^\s*(>=|>|\u2265|=>)\s*({_NUMBER})\s*(.*?)\s*$")


def _decimal(text: str) -> float | None:
    return number(text.replace(",", "."))


@dataclass(frozen=True)
class LabValue:
    """A result's value as reported: the number (None when it cannot be read), comparator, unit and flags."""

    value: float | None
    comparator: str | None = None
    unit: str | None = None            # as reported (``unit``, else ``code``)
    unit_key: str = ""                 # lower-case unit for conversion
    flags: frozenset[str] = frozenset()
    text: str = ""                     # the value as reported, for card text when it cannot be read


def _string_value(text: str) -> LabValue:
    match = _STRING_VALUE.match(text)
    if not match:
        return LabValue(None, text=text[:40])
    comparator = _UNICODE_COMPARATORS.get(match.group(1) or "", match.group(1))
    value = _decimal(match.group(2))
    unit: str | None = None
    flags: set[str] = set()
    for token in match.group(3).split():
        flag = _FLAG.match(token)
        if flag:  # "1.2 L" is flagged low: no electrolyte is reported in litres
            flags.add(flag.group(1).upper())
        elif unit is None and not flags and not re.fullmatch(_NUMBER, token):
            unit = token
        else:
            return LabValue(None, text=text[:40])
    return LabValue(value, comparator, unit, (unit or "").lower(), frozenset(flags), text[:40])


def _has_value(raw: dict) -> bool:
    """Whether a result carries a value element of any kind (readable or not)."""
    return any(isinstance(k, str) and k.startswith("value") for k in raw)


def read_value(raw: dict) -> LabValue | None:
    """The value of one result (see the module doc); None when it carries no value at all."""
    quantity = raw.get("valueQuantity")
    if isinstance(quantity, list) and len(quantity) == 1:
        quantity = quantity[0]
    if isinstance(quantity, dict):
        comparator = one(quantity.get("comparator"))
        unit = text_of(quantity.get("unit")) or text_of(quantity.get("code"))
        unit_key = (text_of(quantity.get("code")) or text_of(quantity.get("unit")) or "").lower()
        value = number(quantity.get("value"))
        shown = f"{comparator or ''}{quantity.get('value')!s:.20} {unit or ''}".strip()
        if comparator is not None and comparator not in _COMPARATORS:
            return LabValue(None, text=shown)
        return LabValue(value, comparator, unit, unit_key, text=shown)
    if quantity is not None:
        value = number(quantity)
        return LabValue(value, text=str(quantity)[:40])
    if "valueInteger" in raw:
        return LabValue(number(raw["valueInteger"]), text=str(raw["valueInteger"])[:40])
    if "valueString" in raw:
        text = one(raw["valueString"])
        return _string_value(text.strip()) if text is not None else LabValue(None)
    for key in raw:
        if isinstance(key, str) and key.startswith("value") and key != "valueQuantity":
            return LabValue(None, text=label_text(raw.get(key)))
    return None


def label_text(value: object) -> str:
    words = words_of(value) if isinstance(value, dict) else []
    return words[0][:40] if words else ""


@dataclass(frozen=True)
class LabResult:
    """The latest result of one lab, converted and judged."""

    resource: dict
    lab: str                        # key of LABS
    value: float | None             # as reported; None: the value could not be read
    unit: str | None                # as reported (``unit``, else ``code``)
    value_default: float | None     # in the default unit (corrected for calcium with albumin); None: unit unknown
    default_unit: str
    effective: datetime
    low: bool
    why_low: str | None             # "below the reference range" | "flagged low" | "below the default limit 3.5 mmol/L"
    albumin: "LabResult | None" = None  # the albumin that corrected a total calcium
    comparator: str | None = None
    judged: bool = True             # False: neither low nor normal could be told (unreadable, or "<5" potassium)
    reported: str = ""              # the value as reported, for card text

    @property
    def reference(self) -> str | None:
        return reference_of(self.resource)

    @property
    def corrected(self) -> bool:
        return self.albumin is not None

    @property
    def readable(self) -> bool:
        """Whether the value could be read and judged low or not low."""
        return self.value is not None and self.judged

    def shown(self) -> str:
        """The value for card text: ``3.1 mmol/L``, ``<1.5 mg/dL``; corrected calcium adds its correction;
        a value that could not be read is quoted as reported."""
        if self.value is None:
            return f"\u201c{self.reported}\u201d" if self.reported else "(no readable value)"
        text = f"{self.comparator or ''}{self.value:g} {self.unit or ''}".strip()
        if self.albumin is not None and self.value_default is not None:
            text += f" (corrected for albumin {self.albumin.shown()}: {self.value_default:.1f} {self.default_unit})"
        return text


def _below(value: float, comparator: str | None, limit: float) -> bool | None:
    """Whether the true value is below ``limit``; None when the bound cannot tell."""
    if comparator == "<":
        return True if value <= limit else None
    if comparator == "<=":
        return True if value < limit else None
    if comparator in (">", ">="):
        return False if value >= limit else None
    return value < limit


def _time_key(raw: dict) -> str:
    """The result's time as sent (``effectiveDateTime``, ``effectivePeriod.end``, ...), for ordering."""
    usual = raw.get("effectiveDateTime")
    if usual.__class__ is str and _TIME_SHAPE.match(usual):  # the usual shape, kept fast
        return usual
    for path in _TIME_PATHS:
        value: object = raw
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        value = one(value)
        if value is not None and _TIME_SHAPE.match(value):
            return value
    return ""


def _panel_members(record: Record) -> list[dict]:
    """Observations contained in a DiagnosticReport (``result``) or a panel Observation (``hasMember``),
    each lent its container's status and time when it has none, and referenced through its container."""
    def compute() -> list[dict]:
        out = []
        for container in record.containing("DiagnosticReport", "Observation"):
            contained = container.get("contained")
            if not contained:
                continue
            by_id = {c.get("id"): c for c in items(contained) if isinstance(c, dict) and isinstance(c.get("id"), str)}
            refs = items(container.get("result")) + items(container.get("hasMember"))
            for ref in refs:
                target = one(ref.get("reference")) if isinstance(ref, dict) else None
                member = by_id.get(target[1:]) if target and target.startswith("#") else None
                if not isinstance(member, dict) or member.get("resourceType") != "Observation":
                    continue
                lent = {k: v for k, v in member.items() if k != "id"}
                lent["_fullUrl"] = reference_of(container) or ""
                if "status" not in lent and "status" in container:
                    lent["status"] = container["status"]
                if not _time_key(lent):
                    for path in ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"):
                        if path in container:
                            lent[path] = container[path]
                out.append(lent)
        return out

    return record.memo(("panel-members",), compute)


def _coded_results(record: Record, vs: ValueSet) -> list[dict]:
    return record.coded("Observation", vs) + [m for m in _panel_members(record) if vs.matches(m.get("code"))]


def _candidates(record: Record, spec: LabSpec, since: str = "") -> list[tuple[dict, str]]:
    """Results of the lab (with a value, readable or not) dated on or after the day ``since`` (an ISO
    date; "" for all), newest first by the time as sent.

    Only the time as sent is looked at for an older result, so a long lab history costs neither
    status checks, the checks ``Record.coded`` makes (another patient's, second copies), sorting,
    date parsing nor model building beyond the window asked for. Those checks are made on what is
    left, which leaves the same results as making them first, unless an id comes twice among the
    lab's results (which copy counts is then decided on the whole history, as ``coded`` decides it).
    """
    def compute() -> list[tuple[dict, str]]:
        vs = valueset(spec.valueset)
        copies = record.coded_copies("Observation", vs)
        out = _since(copies, since)
        if out and not _distinct_ids(copies):
            out = _since(record.coded("Observation", vs), since)
        elif out:
            kept = {id(raw) for raw in record.usable("Observation", [raw for raw, _ in out])}
            if len(kept) < len(out):
                out = [pair for pair in out if id(pair[0]) in kept]
        out += _since([m for m in _panel_members(record) if vs.matches(m.get("code"))], since)
        out.sort(key=_SECOND, reverse=True)
        return out

    return record.memo(("lab-candidates", spec.name, since), compute)


def _distinct_ids(resources: list[dict]) -> bool:
    """Whether no id comes twice among ``resources``."""
    ids = [raw.get("id") for raw in resources]
    try:
        if len(set(ids)) == len(ids):
            return True
    except TypeError:  # an id sent as a list or an object
        pass
    ids = [rid for rid in ids if rid.__class__ is str]  # only a string id makes copies (as ``coded`` reads them)
    return len(set(ids)) == len(ids)


def _since(results: list[dict], since: str) -> list[tuple[dict, str]]:
    """(result, time as sent) of ``results`` with a value and a result status, dated on or after the
    day ``since``, in the order given."""
    out = []
    usual_shape = _TIME_SHAPE.match
    for raw in results:
        key = raw.get("effectiveDateTime")
        if key.__class__ is not str or not usual_shape(key):  # the usual shape inline, as _time_key reads it
            key = _time_key(raw)
        if not key or key[:10] < since:
            continue
        status = raw.get("status")
        if (status if status.__class__ is str else one(status)) not in RESULT_STATUSES:
            continue
        if "valueQuantity" not in raw and not _has_value(raw):
            continue
        out.append((raw, key))
    return out


def _dated(record: Record, spec: LabSpec, start: datetime, end: datetime) -> list[tuple[dict, datetime]]:
    """Results of the lab timed between ``start`` and ``end`` (inclusive), parsed; newest first.

    ISO 8601 times sort by their date part, give or take a day of time zone offset, so
    only those whose date part is within a day of the range are parsed at all.
    """
    lo, hi = (start - timedelta(days=1)).date().isoformat(), (end + timedelta(days=1)).date().isoformat()
    out = []
    for raw, key in _candidates(record, spec, lo):
        if key[:10] > hi:
            continue
        # the usual: the time as sent is the first path's value, read as first_time would read it
        when = parse_text(key) if raw.get("effectiveDateTime") is key else None
        if when is None:
            when = first_time(raw, *_TIME_PATHS)
        if when is not None and start <= when <= end:
            out.append((raw, when))
    out.sort(key=_SECOND, reverse=True)
    return out


def range_low_text(text: object) -> tuple[float, str] | None:
    """The low end of a reference range given as text ("3.5-5.1 mmol/L", ">=1.7 mg/dL"): (value, unit)."""
    text = one(text)
    if not text:
        return None
    match = _RANGE_TEXT.match(text) or _RANGE_FLOOR.match(text)
    if not match:
        return None
    low = _decimal(match.group(1) if match.re is _RANGE_TEXT else match.group(2))
    return (low, match.group(3).strip().lower()) if low is not None else None


def _range_low(raw: dict, unit: str, spec: LabSpec) -> tuple[float, float | None] | None:
    """The usable reference range low as (in the result's unit, in the default unit or None), or None."""
    for rng in items(raw.get("referenceRange")):
        if not isinstance(rng, dict):
            continue
        if rng.get("type") is not None and "normal" not in codes_of(rng.get("type")):
            continue
        low: float | None = None
        low_unit = ""
        if isinstance(rng.get("low"), dict):
            low = number(rng["low"].get("value"))
            low_unit = str(one(rng["low"].get("code")) or one(rng["low"].get("unit")) or "").strip().lower()
        elif "low" not in rng and "high" not in rng:
            from_text = range_low_text(rng.get("text"))
            if from_text is not None:
                low, low_unit = from_text
        if low is None:
            continue
        default = low * spec.units[low_unit or unit] if (low_unit or unit) in spec.units else None
        if not low_unit or low_unit == unit:
            return low, default
        if default is not None and unit in spec.units:
            return default / spec.units[unit], default
    return None


def _judge(raw: dict, reading: LabValue, spec: LabSpec, corrected: float | None) -> tuple[bool | None, str | None]:
    """(low, why): low True / False, or None when it cannot be told."""
    value, comparator, unit = reading.value, reading.comparator, reading.unit_key
    if value is None:
        return None, None
    rng = _range_low(raw, unit, spec)
    verdict: bool | None = None
    if corrected is not None:
        if rng is not None and rng[1] is not None:
            verdict = _below(corrected, comparator, rng[1])
            return (True, "below the reference range") if verdict else (verdict, None)
    else:
        if rng is not None:
            verdict = _below(value, comparator, rng[0])
            if verdict is not None:
                return (True, "below the reference range") if verdict else (False, None)
        flags = set(reading.flags).union(*(codes_of(i) for i in items(raw.get("interpretation"))
                                           if isinstance(i, dict)))
        if flags & _LOW_FLAGS:
            return True, "flagged low"
        if flags & _NOT_LOW_FLAGS:
            return False, None
        if rng is not None:
            return None, None
    converted = corrected if corrected is not None else (value * spec.units[unit] if unit in spec.units else None)
    if converted is not None and spec.limit is not None:
        verdict = _below(converted, comparator, spec.limit)
        return (True, f"below the default limit {spec.limit:g} {spec.unit}") if verdict else (verdict, None)
    return (None, None) if comparator is not None else (False, None)


def _result(record: Record, spec: LabSpec, raw: dict, when: datetime, albumin_days: int,
            sent: dict | None = None) -> LabResult:
    """``raw`` judged; ``sent`` is the resource as received, whose value is quoted when the reader dropped it."""
    reading = read_value(raw)
    if (reading is None or reading.value is None) and sent is not None and sent is not raw:
        reading = read_value(sent) or reading
    reading = reading or LabValue(None)
    value, unit = reading.value, reading.unit_key
    default = value * spec.units[unit] if value is not None and unit in spec.units else None
    albumin = _albumin_near(record, when, albumin_days) if spec.name == "calcium" and default is not None else None
    corrected = None
    if albumin is not None and default is not None and albumin.value_default is not None:
        corrected = default + 0.8 * (4.0 - albumin.value_default)
    low, why = _judge(raw, reading, spec, corrected)
    return LabResult(resource=raw, lab=spec.name, value=value, unit=reading.unit,
                     value_default=corrected if corrected is not None else default, default_unit=spec.unit,
                     effective=when, low=low is True, why_low=why, albumin=albumin, comparator=reading.comparator,
                     judged=low is not None, reported=reading.text)


def _albumin_near(record: Record, when: datetime, days: int) -> LabResult | None:
    spec = LABS["albumin"]
    span = timedelta(days=days)
    near = sorted(_dated(record, spec, when - span, when + span), key=lambda c: abs(c[1] - when))
    for raw, at in near:
        res = readable(record, raw)
        reading = read_value(res) if res is not None else None
        if res is None or reading is None or reading.value is None or reading.comparator is not None \
                or reading.unit_key not in spec.units:
            continue
        return _result(record, spec, res, at, days)
    return None


def latest_lab(record: Record, lab: str, now: datetime, window_days: int,
               albumin_days: int = 7) -> LabResult | None:
    """The newest result of ``lab`` (a key of ``LABS``) inside the window, judged; None if none.

    A result whose value could not be read is the latest all the same (``readable``
    False): it is never reported as no result. Judged once per call for each question
    (several rules ask the same).
    """
    return record.memo(("latest-lab", lab, now, window_days, albumin_days),
                       lambda: _latest_lab(record, lab, now, window_days, albumin_days))


def _latest_lab(record: Record, lab: str, now: datetime, window_days: int, albumin_days: int) -> LabResult | None:
    spec = LABS[lab]
    recent = _dated(record, spec, now - timedelta(days=window_days), now + FUTURE_TOLERANCE)
    for raw, when in recent:
        res = readable(record, raw)
        if res is not None and one(res.get("status")) in RESULT_STATUSES:
            return _result(record, spec, res, when, albumin_days, sent=raw)  # a dropped value: unreadable
    return None


def _named_results(record: Record, spec: LabSpec) -> list[dict]:
    """Observations (standalone or panel members) not coded in the lab's value set whose code's text or
    display names the lab (a local code only, as an EHR sends "MAGNESIUM" under ``urn:oid:...``)."""
    if not spec.words:
        return []
    vs = valueset(spec.valueset)
    members = [m for m in _panel_members(record) if not vs.matches(m.get("code"))
               and all(any(w in _words_of(t) for t in words_of(m.get("code"))) for w in spec.words)]
    coded = {id(r) for r in record.coded("Observation", vs)}
    return [r for r in record.named("Observation", *spec.words) if id(r) not in coded] + members


def _words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _in_doubt(record: Record, spec: LabSpec, now: datetime, window_days: int) -> bool:
    """Whether a result of the lab may lie in the window although none could be read as one: its
    status is missing, unknown or unreadable, it is a result whose time cannot be read, or it is a
    result that names the lab only in words under a code the value set does not know (a local
    code): it cannot be used as the lab's value, nor may the lab be called absent beside it."""
    def compute() -> bool:
        start = now - timedelta(days=window_days)
        lo = (start - timedelta(days=1)).date().isoformat()
        for raw in _named_results(record, spec):
            key = _time_key(raw)
            if key and key[:10] < lo:
                continue
            if one(raw.get("status")) in _NOT_RESULT_STATUSES or ("valueQuantity" not in raw and not _has_value(raw)):
                continue
            when = first_time(raw, *_TIME_PATHS)
            if when is None or start <= when <= now + FUTURE_TOLERANCE:
                return True   # a result named as the lab, in the window or of unknown date
        for raw in _coded_results(record, valueset(spec.valueset)):
            key = _time_key(raw)
            if key and key[:10] < lo:
                continue  # dated well before the window: no doubt, whatever its status (no date parsing)
            status = one(raw.get("status"))
            if status in _NOT_RESULT_STATUSES:
                continue
            if "valueQuantity" not in raw and not _has_value(raw):
                continue
            when = first_time(raw, *_TIME_PATHS)
            if when is None:
                return True   # a result (or perhaps one) of unknown date
            if status not in RESULT_STATUSES and start <= when <= now + FUTURE_TOLERANCE:
                return True   # perhaps a result, inside the window
        return False

    return record.memo(("lab-doubt", spec.name, now, window_days), compute)


def lab_absent(record: Record, lab: str, now: datetime, window_days: int) -> bool:
    """Whether it may be said that ``lab`` has no result in the window: no result found, the
    Observations and DiagnosticReports arrived whole and readable, and no result of the lab is in
    doubt (status or time unreadable). ``calcium`` covers ionized calcium too."""
    labs = ("calcium", "calcium_ionized") if lab == "calcium" else (lab,)
    if not record.complete("Observation", "DiagnosticReport"):
        return False
    return all(latest_lab(record, name, now, window_days) is None
               and not _in_doubt(record, LABS[name], now, window_days) for name in labs)


def latest_calcium(record: Record, now: datetime, window_days: int, albumin_days: int = 7) -> LabResult | None:
    """The newest recent calcium of either kind: total (albumin-corrected) or ionized.

    Ionized wins a tie: it is the more direct measure.
    """
    results = [r for r in (latest_lab(record, "calcium_ionized", now, window_days),
                           latest_lab(record, "calcium", now, window_days, albumin_days)) if r is not None]
    return max(results, key=lambda r: r.effective) if results else None


def calcium_low(record: Record, now: datetime, window_days: int, albumin_days: int = 7) -> LabResult | None:
    """The latest recent calcium (``latest_calcium``) when it is low, else None."""
    result = latest_calcium(record, now, window_days, albumin_days)
    return result if result is not None and result.low else None


# -- LGI1 antibody -----------------------------------------------------------------------

_POSITIVE_FLAGS = {"POS", "A", "AA", "H", "HH", "HU", "DET"}
_NEGATIVE_FLAGS = {"NEG", "N", "ND"}
_POSITIVE_SNOMED = {"10828004", "52101004", "260373001", "11214006"}   # positive, present, detected, reactive
_NEGATIVE_SNOMED = {"260385009", "2667000", "260415000", "131194007"}  # negative, absent, not detected, non-reactive
_NEGATIVE_TEXT = re.compile(r"\b(negative|not (detected|present|reactive)|non[- ]?reactive|absent|none detected)\b",
                            re.I)
_POSITIVE_TEXT = re.compile(r"\b(positive|detected|reactive|present)\b", re.I)
_TITRE = re.compile(r"^\s*([<>]=?)?\s*1\s*:\s*(\d+(?:\.\d+)?)\s*$")


def _part(ratio: dict, name: str) -> dict:
    part = ratio.get(name)
    return part if isinstance(part, dict) else {}


@dataclass(frozen=True)
class Lgi1Result:
    """One LGI1 antibody result and its reading."""

    resource: dict
    effective: datetime
    positive: bool

    @property
    def reference(self) -> str | None:
        return reference_of(self.resource)

    def shown(self) -> str:
        """The reported value for card text ("positive", "1:40"), else positive / negative."""
        raw = self.resource
        if isinstance(raw.get("valueString"), str) and raw["valueString"].strip():
            return raw["valueString"].strip()
        texts = words_of(raw.get("valueCodeableConcept"))
        if texts:
            return texts[0]
        ratio = raw.get("valueRatio")
        if isinstance(ratio, dict):
            num = number(_part(ratio, "numerator").get("value"))
            den = number(_part(ratio, "denominator").get("value"))
            if num is not None and den is not None:
                return f"{num:g}:{den:g}"
        quantity = raw.get("valueQuantity")
        if isinstance(quantity, dict) and number(quantity.get("value")) is not None:
            return f"{quantity.get('comparator', '')}{number(quantity['value']):g} {quantity.get('unit', '')}".strip()
        return "positive" if self.positive else "negative"


def _text_positive(text: str) -> bool | None:
    if _NEGATIVE_TEXT.search(text):
        return False
    titre = _TITRE.match(text)
    if titre:
        comparator, dilution = titre.group(1), float(titre.group(2))
        return comparator not in ("<", "<=") and dilution >= 10
    return True if _POSITIVE_TEXT.search(text) else None


def lgi1_positive(raw: dict) -> bool:
    """Whether one LGI1 antibody result is positive.

    Interpretation first (``POS``/``A``/``AA``/``H``/``HH``/``HU``/``DET`` positive,
    ``NEG``/``N``/``ND`` negative); else the value: a titre of 1:10 or more (valueString
    "1:40", valueRatio 1/40, or a valueQuantity of 10 or more without a ``<``
    comparator), a coded value meaning positive (SNOMED Positive 10828004, Present
    52101004, Detected 260373001, Reactive 11214006) or the words positive / detected
    / reactive, ``valueBoolean: true``. Anything else is not positive.
    """
    flags = set().union(*(codes_of(i) for i in items(raw.get("interpretation")) if isinstance(i, dict)))
    if flags & _POSITIVE_FLAGS:
        return True
    if flags & _NEGATIVE_FLAGS:
        return False
    if raw.get("valueBoolean") is True:
        return True
    concept = raw.get("valueCodeableConcept")
    codes = codes_of(concept)
    if codes & _NEGATIVE_SNOMED:
        return False
    if codes & _POSITIVE_SNOMED:
        return True
    texts = words_of(concept) + ([raw["valueString"]] if isinstance(raw.get("valueString"), str) else [])
    for text in texts:
        verdict = _text_positive(text)
        if verdict is not None:
            return verdict
    ratio = raw.get("valueRatio")
    if isinstance(ratio, dict):
        num = number(_part(ratio, "numerator").get("value"))
        den = number(_part(ratio, "denominator").get("value"))
        if num and den and num > 0:
            return den / num >= 10 and _part(ratio, "denominator").get("comparator") not in ("<", "<=")
    quantity = raw.get("valueQuantity")
    if isinstance(quantity, dict):
        value = number(quantity.get("value"))
        return value is not None and value >= 10 and quantity.get("comparator") not in ("<", "<=")
    return False


def lgi1_results(record: Record) -> list[Lgi1Result]:
    """Valid final/amended/corrected LGI1 antibody results (``lgi1_antibody_lab``), newest first.

    Results without an effective time (``effectiveDateTime``, ``effectivePeriod.end``,
    ``issued``) are left out: they cannot be "latest" or inside a window.
    """
    out = []
    for found in _coded_results(record, valueset("lgi1_antibody_lab")):
        raw = readable(record, found)
        when = first_time(raw, *_TIME_PATHS) if raw is not None else None
        if raw is not None and one(raw.get("status")) in RESULT_STATUSES and when is not None:
            out.append(Lgi1Result(raw, when, lgi1_positive(raw)))
    return sorted(out, key=lambda r: r.effective, reverse=True)


def lgi1_in_doubt(record: Record) -> bool:
    """Whether an LGI1 antibody result may be on file although ``lgi1_results`` could not read it as
    one: its status is missing, unknown or unreadable, or its time cannot be read."""
    for found in _coded_results(record, valueset("lgi1_antibody_lab")):
        status = one(found.get("status"))
        if status in _NOT_RESULT_STATUSES:
            continue
        if status not in RESULT_STATUSES or first_time(found, *_TIME_PATHS) is None:
            return True
    return False
