"""Orders: the FHIR R4 resources cards suggest, and how to tell two suggestions apart.

Builders return complete, valid ``ServiceRequest`` / ``MedicationRequest`` JSON (status
``draft``, intent ``proposal`` unless told, ``subject`` the patient, ``reasonReference``
to the findings that fired the card). They carry no ``id`` unless one is given (an
``update`` action needs the draft's id). Codes come from data: a ServiceRequest is coded
with its value set's codings marked ``"suggest": true``; a MedicationRequest with a
product's RxNorm coding from the product table when the caller names one, else the
ingredient's RxNorm coding from ``medications.json``, else text only (an ingredient
whose code is not verified, e.g. baclofen).

``order_key`` identifies the same order across cards, so one call never suggests it
twice; ``covers(a, b)`` says whether order ``a`` already includes order ``b`` by clinical
equivalence (the ``COVERS`` table: needle EMG with nerve conduction studies includes the
nerve conduction studies), so one call never offers the same study twice under two
codes; ``describe`` gives the short label for a suggestion or action description.
"""

from __future__ import annotations

from typing import Iterable

from ..fhir.terminology import CPT, RXNORM, SNOMED, UCUM, ingredient_coding, valueset
from ..fhir.terminology import product as find_product
from .card import prune
from .clinical.elements import label_of
from .clinical.findings import Finding
from .clinical.orders_seen import order_codes, order_concept

__all__ = ["service_request", "medication_request", "suggest_codings", "order_key", "covers", "describe",
           "CATEGORIES", "PRIORITIES", "COVERS"]

# ServiceRequest.category codings (SNOMED CT; the R4 example value set and US Core usage).
CATEGORIES = {
    "laboratory": {"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"},
    "imaging": {"system": SNOMED, "code": "363679005", "display": "Imaging"},
    "procedure": {"system": SNOMED, "code": "103693007", "display": "Diagnostic procedure"},
    "referral": {"system": SNOMED, "code": "3457005", "display": "Patient referral"},
}
PRIORITIES = ("routine", "urgent", "asap", "stat")
_INTENTS = ("proposal", "plan", "order")
_ORDERED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/dose-rate-type", "code": "ordered",
                        "display": "Ordered"}]}


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _mg(value: float) -> dict:
    return {"value": _number(value), "unit": "mg", "system": UCUM, "code": "mg"}


def _reasons(reasons: Iterable[Finding]) -> list[dict]:
    out, seen = [], set()
    for finding in reasons:
        ref = finding.reference
        if ref and ref not in seen:
            seen.add(ref)
            out.append({"reference": ref, "display": finding.display})
    return out


def _check(intent: str, priority: str = "routine") -> None:
    if intent not in _INTENTS:
        raise ValueError(f"intent must be one of {_INTENTS}, not {intent!r}")
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")


def suggest_codings(valueset_name: str) -> list[dict]:
    """The codings a suggested order carries: the value set's entries marked ``suggest``."""
    codings = [{"system": c["system"], "code": c["code"], "display": c.get("display")}
               for c in valueset(valueset_name).codings if c.get("suggest")]
    if not codings:
        raise ValueError(f"value set {valueset_name!r} has no coding marked 'suggest'")
    return prune(codings)


def service_request(patient_id: str, valueset_name: str, *, text: str, category: str,
                    priority: str = "routine", reasons: Iterable[Finding] = (), note: str | None = None,
                    intent: str = "proposal", id: str | None = None) -> dict:
    """A draft ServiceRequest for the value set's order.

    ``category``: a key of ``CATEGORIES`` (laboratory, imaging, procedure, referral);
    ``text``: the order's human name (``code.text``); ``note``: e.g. "allow 15 minutes
    of quiet breathing before the test".
    """
    _check(intent, priority)
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {sorted(CATEGORIES)}, not {category!r}")
    return prune({
        "resourceType": "ServiceRequest",
        "id": id,
        "status": "draft",
        "intent": intent,
        "priority": priority,
        "category": [{"coding": [dict(CATEGORIES[category])]}],
        "code": {"coding": suggest_codings(valueset_name), "text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonReference": _reasons(reasons),
        "note": [{"text": note}] if note else None,
    })


def medication_request(patient_id: str, ingredient: str, *, dose_mg: float | None, times_per_day: int | None,
                       text: str, max_mg_per_day: float | None = None, reasons: Iterable[Finding] = (),
                       note: str | None = None, intent: str = "proposal", id: str | None = None,
                       product: str | None = None) -> dict:
    """A draft MedicationRequest for an ingredient (a key of medications.json).

    Coded with ``product`` (an RxNorm code of the product table, e.g. baclofen 10 MG
    Oral Tablet) when given, else with the ingredient's RxNorm code, else text only
    (an ingredient whose code is not verified).

    ``dose_mg`` x ``times_per_day`` becomes ``doseAndRate`` (ordered, mg) and
    ``timing.repeat`` (frequency per 1 day), with the oral route (``route_oral``: every
    drug the cards order is taken by mouth); ``max_mg_per_day`` becomes
    ``maxDosePerPeriod`` (mg per 1 d); ``text`` is the dosage text (e.g. the weekly
    titration). Pass ``dose_mg=None, times_per_day=None`` for a drug whose dose the
    card leaves to the clinician (text only).
    """
    _check(intent)
    coding = ingredient_coding(ingredient)
    if product is not None:
        entry = find_product({"coding": [{"system": RXNORM, "code": product}]})
        if entry is None or ingredient not in entry.ingredients:
            raise ValueError(f"{product!r} is not a {ingredient} product of the product table")
        coding = {"system": RXNORM, "code": product, "display": entry.display}
    dosage: dict = {"text": text}
    if dose_mg is not None:
        dosage["route"] = {"coding": suggest_codings("route_oral"), "text": "by mouth"}
    if times_per_day is not None:
        dosage["timing"] = {"repeat": {"frequency": times_per_day, "period": 1, "periodUnit": "d"}}
    if dose_mg is not None:
        dosage["doseAndRate"] = [{"type": _ORDERED, "doseQuantity": _mg(dose_mg)}]
    if max_mg_per_day is not None:
        dosage["maxDosePerPeriod"] = {"numerator": _mg(max_mg_per_day),
                                      "denominator": {"value": 1, "unit": "day", "system": UCUM, "code": "d"}}
    return prune({
        "resourceType": "MedicationRequest",
        "id": id,
        "status": "draft",
        "intent": intent,
        "medicationCodeableConcept": {"coding": [coding] if coding.get("code") else None,
                                      "text": coding.get("display") or ingredient},
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonReference": _reasons(reasons),
        "note": [{"text": note}] if note else None,
        "dosageInstruction": [dosage],
    })


def order_key(resource: dict) -> tuple:
    """``(resourceType, sorted (system, code) pairs)``: equal for the same order on two cards.

    An order with no codes is keyed by its lower-case concept text.
    """
    codes = tuple(sorted(set(order_codes(resource))))
    if codes:
        return (resource.get("resourceType"), codes)
    return (resource.get("resourceType"), ("text", label_of(order_concept(resource)).lower()))


# What covers what, by clinical equivalence: an order coded with one of the codes on the left
# includes every order of the value set on the right (and nothing else is implied).
# * The suggested needle EMG (SNOMED 42803009, "Needle EMG with nerve conduction studies") and the
#   needle EMG codes "when nerve conduction studies are performed" (CPT 95886, 95887) are done with
#   nerve conduction studies: an NCS order beside them is the same study twice.
COVERS: tuple[tuple[frozenset[tuple[str, str]], str], ...] = (
    (frozenset({(SNOMED, "42803009"), (CPT, "95886"), (CPT, "95887")}), "nerve_conduction"),
)


def covers(order: dict, other: dict) -> bool:
    """Whether ``order`` already includes ``other`` (``COVERS``); an order never covers itself."""
    if order_key(order) == order_key(other):
        return False
    codes = set(order_codes(order))
    other_codes = set(order_codes(other))
    for covering, covered in COVERS:
        if codes & covering and not other_codes & covering and valueset(covered).matches(order_concept(other)):
            return True
    return False


_TIMES = {1: "once daily", 2: "twice daily", 3: "three times daily", 4: "four times daily"}


def describe(resource: dict) -> str:
    """A short human label: "Referral to neurologist (urgent)", "Baclofen 10 mg once daily"."""
    label = label_of(order_concept(resource), str(resource.get("resourceType", "order")))
    label = label[:1].upper() + label[1:]
    if resource.get("resourceType") == "MedicationRequest":
        dosage = (resource.get("dosageInstruction") or [{}])[0]
        dose = ((dosage.get("doseAndRate") or [{}])[0].get("doseQuantity") or {}).get("value")
        times = ((dosage.get("timing") or {}).get("repeat") or {}).get("frequency")
        if dose is not None and times is not None:
            return f"{label} {dose:g} mg {_TIMES.get(times, f'{times} times daily')}"
        return label
    priority = resource.get("priority")
    return f"{label} ({priority})" if priority and priority != "routine" else label
