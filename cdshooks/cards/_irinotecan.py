"""Irinotecan: the drug classes that change its exposure, as the irinotecan rules name them.

Irinotecan is activated to SN-38, which is cleared by UGT1A1; both are CYP3A4
substrates. The classes are those of ``medications.json``: the strong lists of the US
Camptosar label (terminology.md section 3) and, kept apart, the moderate CYP3A4 agents.
Shared by drug-induced-twitching (patient-view) and irinotecan-interaction (order hooks)
so that both name a drug and its pathway in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fhir.terminology import ingredient_coding
from .clinical import MedUse, ingredient_names

__all__ = ["Pathway", "STRONG", "MODERATE", "INDUCERS", "pathways_of", "partner_names", "partner_line",
           "only_inducers"]


@dataclass(frozen=True)
class Pathway:
    drug_class: str     # class name in medications.json
    name: str           # how card text names it
    effect: str         # what it does to irinotecan


STRONG = (
    Pathway("cyp3a4_inhibitor", "strong CYP3A4 inhibitor", "raises SN-38 exposure (more toxicity)"),
    Pathway("cyp3a4_inducer", "strong CYP3A4 inducer",
            "lowers SN-38 exposure, so irinotecan may be less effective (reduced efficacy)"),
    Pathway("ugt1a1_inhibitor", "UGT1A1 inhibitor", "raises SN-38 exposure (more toxicity)"),
)
MODERATE = (
    Pathway("cyp3a4_moderate_inhibitor", "moderate CYP3A4 inhibitor", "may raise SN-38 exposure"),
    Pathway("cyp3a4_moderate_inducer", "moderate CYP3A4 inducer",
            "may lower SN-38 exposure (possibly reduced irinotecan efficacy)"),
)


INDUCERS = ("cyp3a4_inducer", "cyp3a4_moderate_inducer")


def only_inducers(found: list[Pathway]) -> bool:
    """Whether every pathway is an induction (exposure goes down, not up)."""
    return bool(found) and all(p.drug_class in INDUCERS for p in found)


def pathways_of(use: MedUse, pathways: tuple[Pathway, ...]) -> list[Pathway]:
    """The pathways through which ``use`` interacts with irinotecan (empty: none)."""
    return [p for p in pathways if use.has(p.drug_class)]


def partner_names(use: MedUse, found: list[Pathway]) -> str:
    """The interacting ingredient(s) of ``use``, by name: ``ketoconazole``."""
    members = frozenset().union(*(ingredient_names(p.drug_class) for p in found))
    return ", ".join(ingredient_coding(n)["display"] for n in sorted(use.ingredients & members))


def partner_line(use: MedUse, found: list[Pathway]) -> str:
    """``ketoconazole (Ketoconazole 200 mg tablet): strong CYP3A4 inhibitor, raises SN-38 exposure ...``."""
    reasons = "; ".join(f"{p.name}, {p.effect}" for p in found)
    names = partner_names(use, found)
    shown = names if use.label.lower() == names.lower() else f"{names} ({use.label})"
    return f"{shown}: {reasons}"
