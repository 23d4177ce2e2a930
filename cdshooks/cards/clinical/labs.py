"""Labs: the latest recent electrolyte results, whether they are low, and LGI1 antibodies.

"A lab result" (catalogue section 1) is an ``Observation`` with status ``final``,
``amended`` or ``corrected``, coded in the lab's value set, with a numeric
``valueQuantity`` and an effective time (``effectiveDateTime``, ``effectivePeriod.end``,
else ``issued``). Invalid FHIR is ignored (and counted by the record). The latest is the
newest effective time inside the window (``dates.within``).

"Low" is decided by the first criterion that can decide:

1. ``referenceRange.low`` (the first range whose ``type`` is absent or ``normal``, whose
   ``low`` has the result's unit, no unit, or a unit both convertible): value below it;
2. ``interpretation``: ``L``/``LL``/``LU`` is low; ``N``/``H``/``HH``/``HU`` is not low
   (other codes, e.g. ``A``, do not decide);
3. the default limit of ``LABS`` after converting to the default unit. A value whose
   unit is not in ``LABS[lab].units`` has ``value_default`` None and is low only
   through 1 or 2.

A ``<`` / ``<=`` comparator makes the value an upper bound (below the limit when it is
at most the limit); ``>`` / ``>=`` never counts as below.

Total calcium is corrected with an albumin (``albumin_lab``, g/dL or g/L) dated within
``albumin_days`` of it, the closest one: corrected = calcium mg/dL + 0.8 x (4.0 -
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

from ...fhir.record import Record
from ...fhir.terminology import valueset
from .dates import FUTURE_TOLERANCE
from .elements import codes_of, first_time, number, reference_of, valid, words_of

__all__ = ["LabSpec", "LABS", "LabResult", "latest_lab", "latest_calcium", "calcium_low",
           "Lgi1Result", "lgi1_results", "lgi1_positive", "RESULT_STATUSES"]

RESULT_STATUSES = {"final", "amended", "corrected"}
_TIME_PATHS = ("effectiveDateTime", "effectivePeriod.end", "effectiveInstant", "issued")


@dataclass(frozen=True)
class LabSpec:
    """One lab of the catalogue table: value set, default unit and limit, accepted units."""

    name: str
    valueset: str
    unit: str                          # the default unit (UCUM, as shown in cards)
    units: dict[str, float]            # lower-case unit -> factor to the default unit
    limit: float | None                # the default low limit, in the default unit


LABS: dict[str, LabSpec] = {
    "potassium": LabSpec("potassium", "potassium_lab", "mmol/L", {"mmol/l": 1.0, "meq/l": 1.0}, 3.5),
    "magnesium": LabSpec("magnesium", "magnesium_lab", "mg/dL",
                         {"mg/dl": 1.0, "mmol/l": 2.431, "meq/l": 1.215}, 1.7),
    "calcium": LabSpec("calcium", "calcium_total_lab", "mg/dL", {"mg/dl": 1.0, "mmol/l": 4.008}, 8.5),
    # mg/dL -> mmol/L divides by 4.008 (Ca 40.08 g/mol): serum ionized calcium is reported in mg/dL by some labs
    "calcium_ionized": LabSpec("calcium_ionized", "calcium_ionized_lab", "mmol/L",
                               {"mmol/l": 1.0, "mg/dl": 1 / 4.008}, 1.12),
    "albumin": LabSpec("albumin", "albumin_lab", "g/dL", {"g/dl": 1.0, "g/l": 0.1}, None),
}

_LOW_FLAGS = {"L", "LL", "LU"}
_NOT_LOW_FLAGS = {"N", "H", "HH", "HU"}


@dataclass(frozen=True)
class LabResult:
    """The latest result of one lab, converted and judged."""

    resource: dict
    lab: str                        # key of LABS
    value: float                    # as reported
    unit: str | None                # as reported (``unit``, else ``code``)
    value_default: float | None     # in the default unit (corrected for calcium with albumin); None: unit unknown
    default_unit: str
    effective: datetime
    low: bool
    why_low: str | None             # "below the reference range" | "flagged low" | "below the default limit 3.5 mmol/L"
    albumin: "LabResult | None" = None  # the albumin that corrected a total calcium

    @property
    def reference(self) -> str | None:
        return reference_of(self.resource)

    @property
    def corrected(self) -> bool:
        return self.albumin is not None

    def shown(self) -> str:
        """The value for card text: ``3.1 mmol/L``; corrected calcium adds its correction."""
        text = f"{self.value:g} {self.unit or ''}".strip()
        if self.albumin is not None and self.value_default is not None:
            text += f" (corrected for albumin {self.albumin.shown()}: {self.value_default:.1f} {self.default_unit})"
        return text


def _unit(quantity: dict) -> str:
    return str(quantity.get("code") or quantity.get("unit") or "").strip().lower()


def _below(value: float, comparator: object, limit: float) -> bool:
    if comparator in (">", ">="):
        return False
    return value <= limit if comparator in ("<", "<=") else value < limit


def _time_key(raw: dict) -> str:
    """The result's time as sent (``effectiveDateTime``, ``effectivePeriod.end``, ...), for ordering."""
    for path in _TIME_PATHS:
        value: object = raw
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value[:4].isdigit():
            return value
    return ""


def _candidates(record: Record, spec: LabSpec) -> list[tuple[dict, float, str]]:
    """Results of the lab with a value, newest first by the time as sent, from the raw JSON only.

    Times are parsed, and validity as FHIR asked (``_valid_first``), only for the results a
    window can reach, so a long lab history costs neither date parsing nor model building.
    """
    def compute() -> list[tuple[dict, float, str]]:
        out = []
        for raw in record.coded("Observation", valueset(spec.valueset)):
            quantity = raw.get("valueQuantity")
            if raw.get("status") not in RESULT_STATUSES or not isinstance(quantity, dict):
                continue
            value, key = number(quantity.get("value")), _time_key(raw)
            if value is None or not key:
                continue
            out.append((raw, value, key))
        out.sort(key=lambda c: c[2], reverse=True)
        return out

    return record.memo(("lab-candidates", spec.name), compute)


def _dated(candidates: list[tuple[dict, float, str]], start: datetime,
           end: datetime) -> list[tuple[dict, float, datetime]]:
    """Candidates timed between ``start`` and ``end`` (inclusive), parsed; newest first.

    ISO 8601 times sort by their date part, give or take a day of time zone offset, so
    only those whose date part is within a day of the range are parsed at all.
    """
    lo, hi = (start - timedelta(days=1)).date().isoformat(), (end + timedelta(days=1)).date().isoformat()
    out = []
    for raw, value, key in candidates:
        day = key[:10]
        if day > hi:
            continue
        if day < lo:
            break
        when = first_time(raw, *_TIME_PATHS)
        if when is not None and start <= when <= end:
            out.append((raw, value, when))
    out.sort(key=lambda c: c[2], reverse=True)
    return out


def _valid_first(record: Record, candidates) -> tuple[dict, float, datetime] | None:
    """The first candidate that is valid FHIR (an invalid one is skipped and counted)."""
    return next((c for c in candidates if valid(record, c[0])), None)


def _range_low(raw: dict, unit: str, spec: LabSpec) -> tuple[float, float | None] | None:
    """The usable ``referenceRange.low`` as (in the result's unit, in the default unit or None), or None."""
    for rng in raw.get("referenceRange") or []:
        if not isinstance(rng, dict) or not isinstance(rng.get("low"), dict):
            continue
        if rng.get("type") is not None and "normal" not in codes_of(rng.get("type")):
            continue
        low = number(rng["low"].get("value"))
        if low is None:
            continue
        low_unit = _unit(rng["low"])
        default = low * spec.units[low_unit or unit] if (low_unit or unit) in spec.units else None
        if not low_unit or low_unit == unit:
            return low, default
        if default is not None and unit in spec.units:
            return default / spec.units[unit], default
    return None


def _judge(raw: dict, value: float, unit: str, spec: LabSpec, corrected: float | None) -> tuple[bool, str | None]:
    comparator = raw["valueQuantity"].get("comparator")
    rng = _range_low(raw, unit, spec)
    if corrected is not None:
        if rng is not None and rng[1] is not None:
            return (True, "below the reference range") if _below(corrected, comparator, rng[1]) else (False, None)
    else:
        if rng is not None:
            return (True, "below the reference range") if _below(value, comparator, rng[0]) else (False, None)
        flags = set().union(*(codes_of(i) for i in raw.get("interpretation") or [] if isinstance(i, dict)))
        if flags & _LOW_FLAGS:
            return True, "flagged low"
        if flags & _NOT_LOW_FLAGS:
            return False, None
    converted = corrected if corrected is not None else (value * spec.units[unit] if unit in spec.units else None)
    if converted is not None and spec.limit is not None and _below(converted, comparator, spec.limit):
        return True, f"below the default limit {spec.limit:g} {spec.unit}"
    return False, None


def _result(record: Record, spec: LabSpec, raw: dict, value: float, when: datetime,
            albumin_days: int) -> LabResult:
    unit = _unit(raw["valueQuantity"])
    shown_unit = raw["valueQuantity"].get("unit") or raw["valueQuantity"].get("code")
    default = value * spec.units[unit] if unit in spec.units else None
    albumin = _albumin_near(record, when, albumin_days) if spec.name == "calcium" and default is not None else None
    corrected = None
    if albumin is not None and default is not None and albumin.value_default is not None:
        corrected = default + 0.8 * (4.0 - albumin.value_default)
    low, why = _judge(raw, value, unit, spec, corrected)
    return LabResult(resource=raw, lab=spec.name, value=value, unit=shown_unit,
                     value_default=corrected if corrected is not None else default, default_unit=spec.unit,
                     effective=when, low=low, why_low=why, albumin=albumin)


def _albumin_near(record: Record, when: datetime, days: int) -> LabResult | None:
    spec = LABS["albumin"]
    span = timedelta(days=days)
    near = [c for c in _dated(_candidates(record, spec), when - span, when + span)
            if _unit(c[0]["valueQuantity"]) in spec.units]
    best = _valid_first(record, sorted(near, key=lambda c: abs(c[2] - when)))
    if best is None:
        return None
    return _result(record, spec, best[0], best[1], best[2], days)


def latest_lab(record: Record, lab: str, now: datetime, window_days: int,
               albumin_days: int = 7) -> LabResult | None:
    """The newest result of ``lab`` (a key of ``LABS``) inside the window, judged; None if none."""
    spec = LABS[lab]
    recent = _dated(_candidates(record, spec), now - timedelta(days=window_days), now + FUTURE_TOLERANCE)
    newest = _valid_first(record, recent)
    if newest is None:
        return None
    raw, value, when = newest
    return _result(record, spec, raw, value, when, albumin_days)


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
            num = number((ratio.get("numerator") or {}).get("value"))
            den = number((ratio.get("denominator") or {}).get("value"))
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
    flags = set().union(*(codes_of(i) for i in raw.get("interpretation") or [] if isinstance(i, dict)))
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
        num = number((ratio.get("numerator") or {}).get("value"))
        den = number((ratio.get("denominator") or {}).get("value"))
        if num and den and num > 0:
            return den / num >= 10 and (ratio.get("denominator") or {}).get("comparator") not in ("<", "<=")
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
    for raw in record.coded("Observation", valueset("lgi1_antibody_lab")):
        when = first_time(raw, *_TIME_PATHS)
        if raw.get("status") in RESULT_STATUSES and when is not None and valid(record, raw):
            out.append(Lgi1Result(raw, when, lgi1_positive(raw)))
    return sorted(out, key=lambda r: r.effective, reverse=True)
