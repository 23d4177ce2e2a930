"""drug-induced-twitching: fasciculations in a patient taking irinotecan.

When it fires
    Fasciculation is present (Condition or Observation, catalogue section 1) **and**
    irinotecan is active: a MedicationRequest (active / on-hold; order, plan or
    original-order) or MedicationStatement (active / intended) naming irinotecan by its
    RxNorm ingredient, a product of the product table, a contained or referenced
    Medication, or by name.

Indicator
    warning when another active drug changes irinotecan exposure: a strong CYP3A4
    inhibitor or inducer or a UGT1A1 inhibitor (the Camptosar label lists), or a
    moderate CYP3A4 inhibitor or inducer; the card names each such drug and its pathway.
    info otherwise.

When it stays silent
    No present fasciculation (refuted, entered-in-error, resolved, negated records do not
    count), or no active irinotecan (stopped, completed, draft or cancelled orders do
    not count).

What the card says (no suggestions)
    Irinotecan is metabolised by CYP3A4 and UGT1A1; twitching with a predictable onset
    and duration during infusions suggests a drug cause; review the interacting drug.
    The card suggests no order: which drug to change is a clinical decision.

Guideline
    000, Initial Clinical Assessment (Medication review): "Identify drugs metabolized by
    CYP3A4 or UGT1A1 (such as irinotecan) that can cause muscle twitching through drug
    interactions"; Drug-Induced: "Typically occurs with predictable onset and duration
    during drug administration"; Critical Pitfalls: "Do not overlook medication causes";
    reference 3 (irinotecan-induced muscle twitching from a possible drug interaction).

What changed and why (clinical review)
    With an enzyme inducer (carbamazepine, phenytoin, phenobarbital, rifampin, rifabutin,
    St John's wort; efavirenz as moderate) and no inhibitor, the card no longer suggests
    that the interaction causes the twitching: an inducer *lowers* SN-38 exposure (the
    Camptosar interaction text, terminology.md S12), so what it means is reduced
    irinotecan efficacy. The card says so, says to look for another cause of the
    twitching, and stays a **warning**: an under-dosed chemotherapy is as serious as the
    toxicity the guideline warns of (our choice; the guideline names CYP3A4 and UGT1A1
    metabolism but not the direction of the effect). Inhibitors (higher SN-38: toxicity,
    twitching) keep the interaction wording. Brand-only medications (Camptosar, Tegretol,
    Dilantin, Rifadin...) are recognised through the brand table.

Choices where the catalogue and guidelines are silent
    Moderate CYP3A4 agents (erythromycin, efavirenz in the product table) also make the
    card a warning: the guideline asks to review *all* drugs with CYP3A4 or UGT1A1
    metabolism, not only strong ones, and the card already fires on the twitching; the
    card names them as moderate so the reader can weigh them.
"""

from __future__ import annotations

from ._electrolytes import finding_line
from ._irinotecan import MODERATE, STRONG, only_inducers, partner_line, partner_names, pathways_of
from .card import Card, render_detail
from .clinical import active_medications, findings, using
from .registry import Call, Source, rule

CITE_000 = "Muscle Twitching: Causes and Treatment"


@rule(
    id="drug-induced-twitching",
    triggers=(("fasciculation",),),
    title="Twitching on irinotecan: review CYP3A4 / UGT1A1 interactions",
    hooks=("patient-view",),
    indicator="warning",
    reads={
        "conditions": ("fasciculation",),
        "observations": ("fasciculation",),
        "medicationRequests": (),
        "medicationStatements": (),
    },
    source=Source("000", sections=("Initial Clinical Assessment (Medication review)", "Drug-Induced",
                                   "Critical Pitfalls", "Reference 3")),
)
def evaluate(call: Call) -> Card | None:
    """A warning naming each interacting drug, else an info card, for twitching on irinotecan."""
    twitch = findings(call.record, "fasciculation")
    if not twitch:
        return None
    meds = active_medications(call.record)
    irinotecan = using(meds, "irinotecan")
    if not irinotecan:
        return None
    partners = []
    for use in meds:
        if use.has("irinotecan"):
            continue
        found = pathways_of(use, STRONG + MODERATE)
        if found:
            partners.append((use, found))
    why = [finding_line(f) for f in twitch[:1]]
    why += [f"Irinotecan active: {u.label}" + (f" (since {u.started:%Y-%m-%d})" if u.started else "")
            for u in irinotecan[:1]]
    why += [f"Also active: {partner_line(u, found)}" for u, found in partners]
    guideline = [
        "Identify drugs metabolized by CYP3A4 or UGT1A1 (such as irinotecan) that can cause muscle twitching "
        f"through drug interactions ({CITE_000} — Initial Clinical Assessment).",
        "Drug-induced twitching typically occurs with predictable onset and duration during drug administration "
        f"({CITE_000} — Drug-Induced; reference 3).",
        f"Do not overlook medication causes: review all drugs ({CITE_000} — Critical Pitfalls).",
    ]
    if partners:
        names = ", ".join(dict.fromkeys(partner_names(u, found) for u, found in partners))
        if all(only_inducers(found) for _, found in partners):
            why.append(f"{names[:1].upper()}{names[1:]} induces CYP3A4: it lowers exposure to SN-38, irinotecan's "
                       f"active metabolite, so the chemotherapy may be less effective. Higher SN-38 exposure does "
                       f"not explain the twitching here: review the inducer for the sake of irinotecan's efficacy, "
                       f"and look for another cause of the twitching.")
            summary = f"Irinotecan with {names}, an enzyme inducer: lower SN-38, reduced irinotecan efficacy; review"
            if len(summary) >= 140:
                summary = "Irinotecan with an enzyme inducer: lower SN-38, reduced irinotecan efficacy; review"
            return Card(summary=summary, indicator="warning", detail=render_detail(why=why, guideline=guideline))
        summary = f"Twitching on irinotecan with {names}: review the interaction"
        if len(summary) >= 140:
            summary = "Twitching on irinotecan with an interacting CYP3A4/UGT1A1 drug: review it"
        return Card(summary=summary, indicator="warning", detail=render_detail(why=why, guideline=guideline))
    return Card(summary="Twitching on irinotecan: consider a drug cause (CYP3A4/UGT1A1 metabolism)",
                indicator="info", detail=render_detail(why=why, guideline=guideline))
