"""Card: what a rule returns, and how it becomes CDS Hooks 2.0 JSON.

Rules build ``Card``s with ``Suggestion``s and ``Action``s; the engine stamps the
uuids, the rule's ``source`` and topic, and the shared override reasons, then calls
``to_json()``, which omits every empty value (the spec forbids ``null``, ``""``,
``[]`` and ``{}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Card", "Suggestion", "Action", "Link", "render_detail", "INDICATORS", "OVERRIDE_REASONS",
           "TOPIC_SYSTEM", "prune"]

INDICATORS = ("critical", "warning", "info")  # most urgent first
TOPIC_SYSTEM = "https://cdshooks.example.org/fasciculation/rules"
OVERRIDE_SYSTEM = "https://cdshooks.example.org/fasciculation/override-reason"
OVERRIDE_REASONS = (
    {"system": OVERRIDE_SYSTEM, "code": "already-addressed", "display": "Already addressed"},
    {"system": OVERRIDE_SYSTEM, "code": "not-clinically-relevant", "display": "Not clinically relevant"},
    {"system": OVERRIDE_SYSTEM, "code": "patient-declined", "display": "Patient declined"},
    {"system": OVERRIDE_SYSTEM, "code": "data-incorrect", "display": "Patient data is incorrect"},
)


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and dicts, recursively (one pass, no intermediate copies:
    every answer's cards and suggested resources go through here)."""
    if isinstance(value, dict):
        pruned: dict = {}
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                v = prune(v)
                if not v:
                    continue
            elif v is None or v == "":
                continue
            pruned[k] = v
        return pruned
    if isinstance(value, list):
        kept: list = []
        for v in value:
            if isinstance(v, (dict, list)):
                v = prune(v)
                if not v:
                    continue
            elif v is None or v == "":
                continue
            kept.append(v)
        return kept
    return value


def _filled(body: dict) -> dict:
    """``body`` less its empty members, one level only: what it holds was pruned already."""
    return {k: v for k, v in body.items() if v is not None and v != "" and v != [] and v != {}}


@dataclass
class Action:
    type: str                      # create | update | delete
    description: str
    resource: dict | None = None
    resource_id: str | None = None

    def to_json(self) -> dict:
        return prune({"type": self.type, "description": self.description,
                      "resource": self.resource, "resourceId": self.resource_id})


@dataclass
class Suggestion:
    label: str
    actions: list[Action] = field(default_factory=list)
    is_recommended: bool | None = None
    uuid: str | None = None

    def to_json(self) -> dict:
        return _filled({"label": self.label, "uuid": self.uuid, "isRecommended": self.is_recommended,
                        "actions": [a.to_json() for a in self.actions]})


@dataclass
class Link:
    label: str
    url: str
    type: str = "absolute"
    app_context: str | None = None

    def to_json(self) -> dict:
        return prune({"label": self.label, "url": self.url, "type": self.type,
                      "appContext": self.app_context if self.type == "smart" else None})


@dataclass
class Card:
    summary: str
    indicator: str
    detail: str = ""
    suggestions: list[Suggestion] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    selection_behavior: str = "any"
    # stamped by the engine
    uuid: str | None = None
    rule_id: str | None = None
    source: dict | None = None
    override_reasons: tuple[dict, ...] = OVERRIDE_REASONS

    def __post_init__(self) -> None:
        if self.indicator not in INDICATORS:
            raise ValueError(f"indicator must be one of {INDICATORS}, not {self.indicator!r}")
        if len(self.summary) >= 140:
            raise ValueError(f"summary must be under 140 characters: {self.summary!r}")

    def to_json(self) -> dict:
        body = {
            "uuid": self.uuid,
            "summary": self.summary,
            "indicator": self.indicator,
            "detail": self.detail,
            "source": prune(self.source),
            "suggestions": [s.to_json() for s in self.suggestions],   # each pruned by its own to_json
            "selectionBehavior": self.selection_behavior if self.suggestions else None,
            "overrideReasons": prune([dict(r) for r in self.override_reasons]),
            "links": [link.to_json() for link in self.links],
        }
        return _filled(body)


def render_detail(why: list[str], guideline: list[str], note: str | None = None) -> str:
    """The Markdown ``detail`` every card carries: why this card, then what the guideline says."""
    parts = ["**Why this card**", ""]
    parts += [f"- {line}" for line in why]
    parts += ["", "**What the guideline says**", ""]
    parts += [f"- {line}" for line in guideline]
    if note:
        parts += ["", note]
    return "\n".join(parts)
