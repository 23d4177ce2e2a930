"""Probe rules: two small rules the CLI, playground and browser tests register, so their expectations do
not depend on the clinical rules being written in ``cdshooks/cards/``.

* ``zz-probe-potassium`` (every hook, ``warning``): a potassium result from the 7 days before
  ``call.now``; its card carries Markdown detail (with raw HTML and a ``javascript:`` link that
  must stay inert), a MedicationRequest suggestion with a dose, and a link.
* ``zz-probe-orders`` (order hooks, ``info``): one card per order the hook judges.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cdshooks.cards import registry as rules
from cdshooks.cards.card import Action, Card, Link, Suggestion
from cdshooks.fhir.terminology import valueset

POTASSIUM = "zz-probe-potassium"
ORDERS = "zz-probe-orders"

DETAIL = ("**Why this card**\n\n"
          "- potassium is *low*\n"
          "- second reason\n\n"
          "See the [probe guideline](https://example.org/guide). "
          "<script>window.probeInjected = 1</script> [bad link](javascript:alert(1))")

POTASSIUM_ORDER = {
    "resourceType": "MedicationRequest",
    "status": "draft",
    "intent": "proposal",
    "medicationCodeableConcept": {"text": "Potassium chloride 20 mEq"},
    "subject": {"reference": "Patient/x"},
    "dosageInstruction": [{
        "text": "with food",
        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 20, "unit": "mEq", "system": "http://unitsofmeasure.org",
                                          "code": "meq"}}],
    }],
}


def _when(resource: dict) -> datetime | None:
    value = resource.get("effectiveDateTime")
    if not isinstance(value, str):
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def potassium(call: rules.Call) -> list[Card]:
    cards = []
    for obs in call.record.coded("Observation", valueset("potassium_lab")):
        when = _when(obs)
        if when is None or not call.now - timedelta(days=7) <= when <= call.now:
            continue
        q = obs.get("valueQuantity") or {}
        order = {**POTASSIUM_ORDER, "subject": {"reference": f"Patient/{call.patient_id}"}}
        cards.append(Card(
            summary=f"Probe: potassium {q.get('value')} {q.get('unit')} on {when.date().isoformat()}",
            indicator="warning", detail=DETAIL,
            suggestions=[Suggestion("Give potassium chloride", [Action("create", "Potassium chloride", order)])],
            links=[Link("Probe reference", "https://example.org/probe")],
        ))
    return cards


def judged_orders(call: rules.Call) -> list[Card]:
    return [Card(summary=f"Probe: judged {o.get('resourceType')}/{o.get('id')}", indicator="info")
            for o in call.orders]


def register(rule_id: str, fn, hooks, indicator: str, reads: dict) -> None:
    rules.rule(id=rule_id, title=rule_id, hooks=hooks, indicator=indicator, reads=reads,
               source=rules.Source("000", ("Test",)))(fn)


@pytest.fixture
def probe_rules():
    """Registers both probes for one test (apps created during the test include them)."""
    register(POTASSIUM, potassium, rules.HOOKS, "warning", {"observations": ("potassium_lab",)})
    register(ORDERS, judged_orders, ("order-select", "order-sign"), "info", {})
    yield
    for rule_id in (POTASSIUM, ORDERS):
        rules._REGISTRY.pop(rule_id, None)
