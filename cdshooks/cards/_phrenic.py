"""Phrenic: the phrenic nerve / diaphragm test that two rules talk about.

``respiratory-involvement`` suggests the test; ``phrenic-test-timing`` reminds the
orderer of its timing. Both use the guideline's instruction word for word, and both
recognise the test the same way.

The test has no verified code (``phrenic_test`` explains why: CPT 95866 is unverified,
phrenic conduction is billed inside the generic nerve conduction counts, and twitch
pressure has no code), so ``respiratory-involvement`` gives it as advice, not as an
order, and a draft order is recognised by the value set (codes, else names) **or** by
the test's names or word sets in its own text and displays: an order coded with a
generic nerve conduction CPT code whose text says "phrenic nerve conduction", or an
order named "EMG HEMIDIAPHRAGM" or "Nerve conduction study, phrenic", is a phrenic test.
"""

from __future__ import annotations

import re

from ..fhir.terminology import valueset
from .clinical import is_order_for
from .clinical.elements import words_of
from .clinical.orders_seen import order_concept

__all__ = ["QUIET_BREATHING", "PHRENIC_TEXT", "is_phrenic_order", "notes_quiet_breathing"]

QUIET_BREATHING = ("Allow 15 minutes of quiet breathing before the test to avoid twitch potentiation from prior "
                   "muscle contractions.")
PHRENIC_TEXT = "Phrenic nerve stimulation with twitch pressure measurement"
_QUIET = re.compile(r"\bquiet\s+breathing\b", re.I)


def is_phrenic_order(order: dict) -> bool:
    """Whether a draft order is for phrenic nerve stimulation / conduction, diaphragm EMG or twitch pressure."""
    if is_order_for(order, "phrenic_test"):
        return True
    names = valueset("phrenic_test")
    return any(names.name_matches(text) for text in words_of(order_concept(order)))


def notes_quiet_breathing(order: dict) -> bool:
    """Whether the order's notes or patient instruction already ask for quiet breathing before the test."""
    texts = [n.get("text") for n in order.get("note") or [] if isinstance(n, dict)]
    texts.append(order.get("patientInstruction"))
    return any(isinstance(t, str) and _QUIET.search(t) for t in texts)
