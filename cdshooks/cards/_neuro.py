"""Neuro: what the neuromuscular rules share in how they word and offer things.

Shared by ``mnd-red-flag``, ``respiratory-involvement``, ``emg-evaluation``,
``pnh-evaluation``, ``lgi1-immunotherapy`` and ``phrenic-test-timing`` so that their
cards describe a finding, an order already on file and a draft order the same way, and
offer a suggested order the same way.
"""

from __future__ import annotations

from datetime import datetime

from .card import Action, Suggestion
from .clinical import Finding
from .clinical.elements import first_time, label_of
from .clinical.orders_seen import order_concept
from .orders import describe

__all__ = ["day", "finding_fact", "findings_fact", "on_file_fact", "order_label", "when_on_file", "offer"]

# When an order already on file happened: ServiceRequest, Procedure, DiagnosticReport.
_ON_FILE_DATES = ("authoredOn", "occurrenceDateTime", "occurrencePeriod.start", "performedDateTime",
                  "performedPeriod.end", "performedPeriod.start", "effectiveDateTime", "effectivePeriod.end",
                  "effectivePeriod.start", "issued")


def day(when: datetime | None) -> str:
    """``2026-01-31``, or "undated"."""
    return f"{when:%Y-%m-%d}" if when is not None else "undated"


def finding_fact(finding: Finding) -> str:
    """"Muscle weakness (Condition, since 2026-01-31)"."""
    return f"{finding.display} ({finding.kind}, since {day(finding.onset)})"


def findings_fact(found: list[Finding]) -> str:
    """The findings of one kind on a line, earliest first."""
    return "; ".join(finding_fact(f) for f in found)


def when_on_file(resource: dict) -> datetime | None:
    """The date of a ServiceRequest / Procedure / DiagnosticReport already on file."""
    return first_time(resource, *_ON_FILE_DATES)


def on_file_fact(resource: dict) -> str:
    """"Referral to neurologist (ServiceRequest active, 2026-01-31)"."""
    label = label_of(order_concept(resource) or resource.get("code"), str(resource.get("resourceType")))
    return f"{label} ({resource.get('resourceType')} {resource.get('status')}, {day(when_on_file(resource))})"


def order_label(order: dict) -> str:
    """A draft order's name for card text."""
    return label_of(order_concept(order), str(order.get("resourceType", "order")))


def offer(resource: dict, recommended: bool = False) -> Suggestion:
    """A suggestion with one ``create`` action for a suggested order."""
    return Suggestion(label=f"Order {describe(resource)}", is_recommended=recommended or None,
                      actions=[Action("create", f"Create: {describe(resource)}", resource)])
