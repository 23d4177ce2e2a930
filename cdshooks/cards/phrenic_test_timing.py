"""phrenic-test-timing: allow 15 minutes of quiet breathing before a phrenic nerve / diaphragm test.

When it fires (info; order-select and order-sign)
    Among the orders judged (``call.orders``: the selected ones, or every draft at
    signing) is an order for phrenic nerve stimulation, phrenic nerve conduction,
    diaphragm EMG or twitch (transdiaphragmatic) pressure, recognised by the
    ``phrenic_test`` value set or by those names in the order's own text (see
    ``_phrenic``), whose notes do not already ask for quiet breathing before the test.

When it stays silent
    No such order is judged, or every such order already carries the instruction
    (a ``note`` or ``patientInstruction`` mentioning quiet breathing).

What it suggests
    For each such order, an ``update`` of the draft (same id, the whole resource) with
    the guideline's instruction added as a note, so the performing laboratory sees it.

Guideline (000 Muscle Twitching: Causes and Treatment)
    Specialized Testing: "Allow 15 minutes of quiet breathing before testing to avoid
    twitch potentiation from prior muscle contractions". Critical Pitfalls: "Do not test
    immediately after muscle activity – Wait 15 minutes before phrenic nerve stimulation
    to avoid false results from twitch potentiation".

Choices where the catalogue and guideline are silent
    * The card offers the note as an ``update`` rather than only saying it: the timing is
      carried out by whoever performs the test, not by the orderer.
    * An order that already asks for quiet breathing is addressed; the rule stays silent.

What changed and why (clinical review)
    Orders named in another word order are recognised: the ``phrenic_test`` value set has
    word sets ("EMG HEMIDIAPHRAGM", "Nerve conduction study, phrenic"), matched as sets
    of words. No procedure code could be verified (CPT 95866 is unverified), so
    recognition stays by name.
"""

from __future__ import annotations

from ._neuro import order_label
from ._phrenic import QUIET_BREATHING, is_phrenic_order, notes_quiet_breathing
from .card import Action, Card, Suggestion, render_detail
from .registry import Call, Source, rule

_CITE = "Muscle Twitching: Causes and Treatment"


def _with_note(order: dict) -> dict:
    """The whole draft with the timing instruction appended to its notes."""
    return {**order, "note": [*(order.get("note") or []), {"text": QUIET_BREATHING}]}


@rule(id="phrenic-test-timing", title="Phrenic nerve test: 15 minutes of quiet breathing first",
      hooks=("order-select", "order-sign"), indicator="info", reads={},
      source=Source("000", sections=("Specialized Testing", "Critical Pitfalls")))
def evaluate(call: Call) -> Card | None:
    tests = [o for o in call.orders if is_phrenic_order(o) and not notes_quiet_breathing(o)]
    if not tests:
        return None
    names = ", ".join(order_label(o) for o in tests)
    why = [f"Ordering: {names}", "The order does not yet ask for a period of quiet breathing before the test"]
    guideline = [
        f"Allow 15 minutes of quiet breathing before testing to avoid twitch potentiation from prior muscle "
        f"contractions ({_CITE} — Specialized Testing).",
        f"Do not test immediately after muscle activity: wait 15 minutes before phrenic nerve stimulation to avoid "
        f"false results from twitch potentiation ({_CITE} — Critical Pitfalls).",
    ]
    suggestions = []
    for order in tests:
        if isinstance(order.get("id"), str):
            resource = _with_note(order)
            suggestions.append(Suggestion(
                label=f"Add the 15-minute quiet-breathing instruction to {order_label(order)}",
                actions=[Action("update", f"Update {order_label(order)}: add the quiet-breathing note", resource)]))
    return Card(summary="Phrenic nerve test: allow 15 minutes of quiet breathing before testing",
                indicator="info", detail=render_detail(why, guideline), suggestions=suggestions)
