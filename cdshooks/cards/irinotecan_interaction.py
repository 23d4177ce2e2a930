"""irinotecan-interaction: an order that puts irinotecan together with a drug changing its exposure.

Hooks: order-select (the selected drafts) and order-sign (every draft); one card per
order judged.

When it fires (warning)
    * the order is a strong CYP3A4 inhibitor, a strong CYP3A4 inducer or a UGT1A1
      inhibitor (the classes of ``medications.json``, from the US Camptosar label
      lists) while irinotecan is active or also among the draft orders; or
    * the order is irinotecan while such a drug is active.

    The card names both drugs and the pathway (inhibitors raise, inducers lower the
    exposure to SN-38, irinotecan's active metabolite) and suggests removing the draft
    order judged (a ``delete`` action with ``resourceId``).

When it stays silent
    No such pair; irinotecan or the partner only stopped, completed or cancelled; an
    order that is neither irinotecan nor a strong partner. In order-sign, a draft pair
    (irinotecan and a partner both drafts) gets one card, on the partner's order.

Guideline
    000, Initial Clinical Assessment (Medication review): "Identify drugs metabolized by
    CYP3A4 or UGT1A1 (such as irinotecan) that can cause muscle twitching through drug
    interactions"; Drug-Induced: "Medications metabolized by CYP3A4 or UGT1A1 can cause
    visible muscle twitching"; Critical Pitfalls: "Do not overlook medication causes";
    reference 3.

Choices where the catalogue and guidelines are silent
    Moderate CYP3A4 agents (erythromycin, efavirenz) do not fire this card: a request to
    delete an order is strong advice, and the label asks to avoid only the strong
    agents. ``drug-induced-twitching`` names moderate agents when the patient twitches.
    When irinotecan itself is the draft, removing it is one of two suggestions (below).

What changed and why (clinical review)
    When irinotecan is the draft and an interacting drug is active, deleting the
    chemotherapy was the only option offered. The label's advice is to switch the
    interacting drug (the Camptosar interaction text, terminology.md S12: ketoconazole is
    stopped at least one week before irinotecan; enzyme-inducing anticonvulsants are
    replaced by non-inducing ones). The card now offers, as alternatives
    (``selectionBehavior: at-most-one``): **stop the interacting drug** (an ``update`` of
    its active MedicationRequest to ``stopped``, keeping the irinotecan order; the card
    says to substitute a non-interacting drug, which we do not pick) or remove the
    irinotecan draft. An interacting drug known only from a MedicationStatement cannot be
    stopped by the card: the text says to switch it. Brand-only names (Nizoral, Biaxin,
    Tegretol, Dilantin, Rifadin, Camptosar) are recognised through the brand table.
"""

from __future__ import annotations

import copy

from ._irinotecan import STRONG, only_inducers, partner_line, partner_names, pathways_of
from .card import Action, Card, Suggestion, render_detail
from .clinical import MedUse, active_medications, medication_of
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"
GUIDELINE = [
    "Identify drugs metabolized by CYP3A4 or UGT1A1 (such as irinotecan) that can cause muscle twitching through "
    f"drug interactions ({CITE_000} — Initial Clinical Assessment; reference 3).",
    "Medications metabolized by CYP3A4 or UGT1A1 can cause visible muscle twitching; do not overlook medication "
    f"causes ({CITE_000} — Drug-Induced; Critical Pitfalls).",
]


def _delete(order: dict, use: MedUse, label: str) -> list[Suggestion]:
    if not isinstance(order.get("id"), str):
        return []
    ref = f"{order.get('resourceType')}/{order['id']}"
    return [Suggestion(label=label, actions=[Action("delete", f"Remove the draft order: {use.label}",
                                                    resource_id=ref)])]


def _summary(text: str, fallback: str) -> str:
    return text if len(text) < 140 else fallback


def _partner_order(order: dict, use: MedUse, active: list[MedUse], drafted: list[MedUse]) -> Card:
    found = pathways_of(use, STRONG)
    names = partner_names(use, found)
    pathway = " and ".join(p.name for p in found)
    why = [f"Draft order: {partner_line(use, found)}."]
    why += [f"Irinotecan active: {u.label}" for u in active]
    why += [f"Irinotecan also ordered: {u.label}" for u in drafted]
    return Card(
        summary=_summary(f"{names[:1].upper()}{names[1:]} with irinotecan: {pathway} changes irinotecan exposure",
                         "Draft order interacts with irinotecan (CYP3A4/UGT1A1): review it"),
        indicator="warning", detail=render_detail(why=why, guideline=GUIDELINE),
        suggestions=_delete(order, use, f"Remove the {names} order"),
    )


def _stop(partner: MedUse, names: str) -> Suggestion | None:
    """Stop an active interacting MedicationRequest (switching it), keeping the irinotecan order."""
    res = partner.resource
    if res.get("resourceType") != "MedicationRequest" or not isinstance(res.get("id"), str):
        return None
    stopped = {**copy.deepcopy(res), "status": "stopped"}
    return Suggestion(label=f"Stop {names} and switch to a non-interacting drug (keep irinotecan)",
                      actions=[Action("update", f"Stop {partner.label}", stopped)], is_recommended=True)


def _irinotecan_order(order: dict, use: MedUse, partners: list[tuple[MedUse, list]]) -> Card:
    names = ", ".join(dict.fromkeys(partner_names(u, f) for u, f in partners))
    pathway = " and ".join(dict.fromkeys(p.name for _, f in partners for p in f))
    why = [f"Draft order: {use.label}."] + [f"Active: {partner_line(u, f)}." for u, f in partners]
    inhibitor = any(not only_inducers(f) for _, f in partners)
    how = ("a strong CYP3A4 inhibitor such as ketoconazole is stopped at least a week before irinotecan" if inhibitor
           else "an enzyme inducer is replaced by a non-inducing drug before irinotecan starts")
    why.append(f"The label's advice is to switch the interacting drug to one that does not act on CYP3A4 or UGT1A1 "
               f"({how}), rather than to give up the chemotherapy; the choice of substitute is the prescriber's.")
    suggestions = [s for s in (_stop(u, partner_names(u, f)) for u, f in partners) if s is not None]
    statements = [u for u, _ in partners if u.resource.get("resourceType") != "MedicationRequest"]
    if statements:
        why.append("Recorded only as taken, not as an order the card can stop: "
                   + ", ".join(u.label for u in statements) + ". Switch it with the patient.")
    suggestions += _delete(order, use, "Or remove the irinotecan order")
    return Card(
        summary=_summary(f"Irinotecan ordered while {names} ({pathway}) is active: switch {names} or hold irinotecan",
                         "Irinotecan ordered with an active CYP3A4/UGT1A1 interacting drug: switch it"),
        indicator="warning", detail=render_detail(why=why, guideline=GUIDELINE), suggestions=suggestions,
        selection_behavior="at-most-one",
    )


@rule(
    id="irinotecan-interaction",
    title="Irinotecan CYP3A4 / UGT1A1 interaction: switch the interacting drug or hold the draft",
    hooks=("order-select", "order-sign"),
    indicator="warning",
    reads={"medicationRequests": (), "medicationStatements": ()},
    source=Source("000", sections=("Initial Clinical Assessment (Medication review)", "Drug-Induced",
                                   "Critical Pitfalls", "Reference 3")),
)
def evaluate(call: Call) -> list[Card]:
    """A warning with a delete suggestion for each order that pairs irinotecan with a strong partner."""
    active = active_medications(call.record)
    active_irinotecan = [u for u in active if u.has("irinotecan")]
    drafted_irinotecan = [u for u in (medication_of(o, call.record) for o in call.draft_orders)
                          if u is not None and u.has("irinotecan")]
    active_partners = [(u, pathways_of(u, STRONG)) for u in active if not u.has("irinotecan")]
    active_partners = [(u, f) for u, f in active_partners if f]
    cards = []
    for order in call.orders:
        use = medication_of(order, call.record)
        if use is None:
            continue
        if use.has("irinotecan"):
            if active_partners:
                cards.append(_irinotecan_order(order, use, active_partners))
        elif pathways_of(use, STRONG) and (active_irinotecan or drafted_irinotecan):
            cards.append(_partner_order(order, use, active_irinotecan, drafted_irinotecan))
    return cards
