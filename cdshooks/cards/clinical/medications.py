"""Medications: which drugs the patient takes, by ingredient, and at what daily dose.

"A medication is active" (catalogue section 1) when a ``MedicationRequest`` has status
``active`` or ``on-hold`` and intent ``order``, ``plan`` or ``original-order`` (and is
not a ``doNotPerform`` order), or a ``MedicationStatement`` has status ``active`` or
``intended``. The drug is named by ``medicationCodeableConcept`` or by
``medicationReference`` to a contained Medication (``#id``), a Medication in the same
Bundle (``fullUrl``) or one returned by prefetch (``Medication/id``), all through
``record.resolve``. Ingredients come from ``terminology.ingredients`` on that concept
(ingredient and product RxNorm codes, else whole-word names in display / text), else
from the Medication's ``ingredient[].itemCodeableConcept``. A reference that cannot be
resolved names no ingredient (the use is kept, labelled by
``medicationReference.display``). Resources are read tolerantly (``record.read``).

Dose arithmetic (catalogue section 3) is in ``daily_dose_mg``; it returns None rather
than guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ...fhir.record import Record
from ...fhir.terminology import Product, drug_class, ingredient_coding, ingredients, product
from .elements import ResourceFacts, codes_of, first_time, items, label_of, number, one, readable

__all__ = ["MedUse", "active_medications", "using", "medication_of", "daily_dose_mg", "dose_unreadable",
           "ingredient_names"]

REQUEST_STATUSES = {"active", "on-hold"}
REQUEST_INTENTS = {"order", "plan", "original-order"}
STATEMENT_STATUSES = {"active", "intended"}

_MASS_MG = {"mg": 1.0, "milligram": 1.0, "milligrams": 1.0, "g": 1000.0, "gram": 1000.0, "grams": 1000.0,
            "ug": 0.001, "mcg": 0.001, "microgram": 0.001, "micrograms": 0.001}
# Units meaning "one unit of the product" (UCUM annotations lose their braces first).
# Units that count solid dose forms (braces stripped); "{pill}" is what the CDS Hooks sandbox's Rx View sends.
_UNIT_FORMS = {"tablet", "tablets", "tab", "tabs", "tbl", "capsule", "capsules", "cap", "caps", "each", "ea",
               "pill", "pills"}
_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}
# HL7 v3 GTSAbbreviation timing codes, used only when timing.repeat gives no period.
_TIMING_CODES = {"QD": 1.0, "AM": 1.0, "PM": 1.0, "BID": 2.0, "TID": 3.0, "QID": 4.0, "QOD": 0.5,
                 "Q4H": 6.0, "Q6H": 4.0, "Q8H": 3.0}


@dataclass(frozen=True)
class MedUse(ResourceFacts):
    """One medication the patient takes (or, from ``medication_of``, is being ordered)."""

    resource: dict                  # the MedicationRequest / MedicationStatement
    concept: dict | None            # the CodeableConcept naming the drug (resource's or its Medication's)
    medication: dict | None         # the resolved Medication resource, when referenced
    ingredients: frozenset[str]     # ingredient names as in medications.json
    product: Product | None         # product table entry (strength), when known
    label: str                      # human label for card text
    started: datetime | None        # authoredOn / effective start (else dateAsserted)
    changed: datetime | None        # last dose change: the later of ``started`` and any started boundsPeriod
    daily_mg: float | None          # total daily dose in mg, None when it cannot be computed

    def has(self, name: str) -> bool:
        """Whether this use contains the ingredient, or an ingredient of the class, ``name``."""
        return bool(self.ingredients & ingredient_names(name))


def ingredient_names(name: str) -> frozenset[str]:
    """The ingredients a name stands for: a class (``cyp3a4_inhibitor``) or one ingredient.

    Raises KeyError for a name that is neither (a typo in a rule fails its tests).
    """
    try:
        return drug_class(name)
    except KeyError:
        ingredient_coding(name)  # raises KeyError for an unknown ingredient
        return frozenset({name})


def _medication_of(resource: dict, record: Record) -> tuple[dict | None, dict | None]:
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return concept, None
    ref = resource.get("medicationReference")
    target = record.resolve(ref.get("reference"), within=resource) if isinstance(ref, dict) else None
    if not isinstance(target, dict) or target.get("resourceType") != "Medication":
        return None, None
    target = readable(record, target)
    if target is None:
        return None, None
    code = target.get("code")
    return (code if isinstance(code, dict) else None), target


def _ingredients(concept: dict | None, medication: dict | None) -> frozenset[str]:
    found = ingredients(concept)
    if found or medication is None:
        return found
    out: set[str] = set()
    for item in items(medication.get("ingredient")):
        if isinstance(item, dict):
            out |= ingredients(item.get("itemCodeableConcept"))
    return frozenset(out)


def _dosages(resource: dict) -> list[dict]:
    key = "dosageInstruction" if resource.get("resourceType") == "MedicationRequest" else "dosage"
    return [d for d in items(resource.get(key)) if isinstance(d, dict)]


def _unit_key(quantity: dict) -> str:
    unit = one(quantity.get("code")) or one(quantity.get("unit")) or ""
    return unit.strip().strip("{}").lower()


def _dose_mg(dosage: dict, strength: Product | None) -> float | None:
    quantities = []
    for dr in items(dosage.get("doseAndRate")):
        if isinstance(dr, dict) and isinstance(dr.get("doseQuantity"), dict):
            ordered = "ordered" in codes_of(dr.get("type"))
            quantities.append((not ordered, dr["doseQuantity"]))
    if not quantities:
        return None
    quantity = sorted(quantities, key=lambda q: q[0])[0][1]
    value = number(quantity.get("value"))
    if value is None:
        return None
    unit = _unit_key(quantity)
    if unit in _MASS_MG:
        return value * _MASS_MG[unit]
    per_unit = strength.strength_mg if strength is not None else None
    form = (strength.unit_form or "").strip().lower() if strength is not None else ""
    if per_unit is not None and (not unit or unit in _UNIT_FORMS or (form and unit == form)):
        return value * per_unit
    return None


def _per_day(dosage: dict) -> float | None:
    timing = dosage.get("timing")
    if not isinstance(timing, dict):
        return None
    repeat: dict = timing["repeat"] if isinstance(timing.get("repeat"), dict) else {}
    period, unit = number(repeat.get("period")), one(repeat.get("periodUnit"))
    if period is not None and unit in _PERIOD_DAYS and period > 0:
        frequency = number(repeat.get("frequency"))
        if frequency is None:
            times = repeat.get("timeOfDay") or repeat.get("when")
            frequency = float(len(times)) if isinstance(times, list) and times else 1.0
        return frequency / (period * _PERIOD_DAYS[unit])
    if period is None:
        for code in codes_of(timing.get("code")):
            if code.upper() in _TIMING_CODES:
                return _TIMING_CODES[code.upper()]
    return None


def daily_dose_mg(resource: dict, strength: Product | None = None) -> float | None:
    """Total daily dose in mg of a MedicationRequest (``dosageInstruction``) or
    MedicationStatement (``dosage``), or None when it cannot be computed.

    Per Dosage: dose per administration = ``doseAndRate[].doseQuantity`` (the ``ordered``
    one first) in mg, g or mcg; or, when its unit is a tablet/capsule word, the product's
    ``unit_form``, or absent, the count times ``strength.strength_mg`` (None when the
    strength is unknown). Administrations per day = ``timing.repeat.frequency`` (default
    1, or the number of ``timeOfDay`` / ``when`` entries) / ``period`` in days
    (``periodUnit`` s, min, h, d, wk, mo = 30 d, a = 365 d); else a v3 timing code (BID,
    TID, QID, QD, QOD, Q4H, Q6H, Q8H, AM, PM) when ``repeat`` has no period. Several
    Dosage entries with no or the same ``sequence`` apply together and are summed;
    entries with different ``sequence`` numbers are a schedule whose current step is not
    known here: None. A ``doseRange``, an unknown unit or a one-off timing gives None.
    """
    dosages = _dosages(resource)
    if not dosages or len({repr(d.get("sequence")) for d in dosages}) > 1:
        return None
    total = 0.0
    for dosage in dosages:
        dose, per_day = _dose_mg(dosage, strength), _per_day(dosage)
        if dose is None or per_day is None:
            return None
        total += dose * per_day
    return round(total, 6)


def dose_unreadable(resource: dict, strength: Product | None = None) -> str | None:
    """Why the daily dose of an order cannot be computed (``daily_dose_mg`` is None), for card text
    ("its dose could not be read"); None when it can be computed."""
    if daily_dose_mg(resource, strength) is not None:
        return None
    dosages = _dosages(resource)
    if not dosages:
        return "its dosage is missing or could not be read"
    if len({repr(d.get("sequence")) for d in dosages}) > 1:
        return "its dosage is a schedule of several steps"
    for dosage in dosages:
        rates = [dr for dr in items(dosage.get("doseAndRate")) if isinstance(dr, dict)]
        quantities = [dr["doseQuantity"] for dr in rates if isinstance(dr.get("doseQuantity"), dict)]
        if not quantities:
            if any("doseRange" in dr for dr in rates):
                return "it gives a dose range, not a dose"
            return "its dose could not be read"
        if any(number(q.get("value")) is None for q in quantities):
            return "its dose could not be read"
        if _dose_mg(dosage, strength) is None:
            return "its dose unit cannot be converted to mg"
        if not isinstance(dosage.get("timing"), dict):
            return "its timing is missing or could not be read"
        if _per_day(dosage) is None:
            return "its timing does not say how many doses a day"
    return "its daily dose could not be computed"


def _dates(resource: dict, now: datetime) -> tuple[datetime | None, datetime | None]:
    if resource.get("resourceType") == "MedicationRequest":
        started = first_time(resource, "authoredOn")
    else:
        started = first_time(resource, "effectivePeriod.start", "effectiveDateTime", "dateAsserted")
    changed = started
    for dosage in _dosages(resource):
        step = first_time(dosage, "timing.repeat.boundsPeriod.start")
        if step is not None and step <= now and (changed is None or step > changed):
            changed = step
    return started, changed


def _use(resource: dict, record: Record) -> MedUse:
    concept, medication = _medication_of(resource, record)
    strength = product(concept)
    ref = resource.get("medicationReference")
    fallback = (one(ref.get("display")) or "") if isinstance(ref, dict) else ""
    found = _ingredients(concept, medication)
    label = label_of(concept, fallback or ", ".join(sorted(found)) or "medication")
    started, changed = _dates(resource, record.now)
    return MedUse(resource=resource, concept=concept, medication=medication, ingredients=found,
                  product=strength, label=label, started=started, changed=changed,
                  daily_mg=daily_dose_mg(resource, strength))


def _active(resource: dict) -> bool:
    if resource.get("resourceType") == "MedicationRequest":
        return (one(resource.get("status")) in REQUEST_STATUSES and one(resource.get("intent")) in REQUEST_INTENTS
                and resource.get("doNotPerform") not in (True, [True]))
    return one(resource.get("status")) in STATEMENT_STATUSES


def active_medications(record: Record) -> list[MedUse]:
    """Every active MedicationRequest and MedicationStatement of the record, in record order."""
    out = []
    for raw in record.of_type("MedicationRequest", "MedicationStatement"):
        if _active(raw):
            res = readable(record, raw)
            if res is not None and _active(res):
                out.append(_use(res, record))
    return out


def using(meds: list[MedUse], name: str) -> list[MedUse]:
    """The uses that contain an ingredient (``"baclofen"``) or a class member (``"diuretic"``)."""
    wanted = ingredient_names(name)
    return [m for m in meds if m.ingredients & wanted]


def medication_of(order: dict, record: Record) -> MedUse | None:
    """The MedUse of one order (e.g. a ``draftOrders`` entry), whatever its status.

    None when it is not a MedicationRequest / MedicationStatement. The order is read
    tolerantly (``MedUse.resource`` is the repaired order, see ``Record.read``).
    """
    if order.get("resourceType") not in ("MedicationRequest", "MedicationStatement"):
        return None
    res = readable(record, order)
    return _use(res, record) if res is not None else None

