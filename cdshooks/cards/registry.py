"""Rules: the rule author's API and the registry of rules.

A rule is one module in ``cdshooks/cards/`` that decorates one function::

    @rule(id="emg-evaluation", title="...", hooks=("patient-view",), indicator="warning",
          reads={"conditions": ("fasciculation", ...), "procedures": ("emg_ncs",)},
          source=Source("Muscle twitching: causes and treatment", sections=(...)),
          after=("mnd-red-flag",))
    def evaluate(call: Call) -> list[Card]: ...

``reads`` names the data the rule needs: a prefetch key (see ``DATA_KEYS``) and
the value sets whose codes its search must include. Discovery builds each hook's
prefetch templates from the rules of that hook. ``after`` lists rules whose outcome this
rule consults through ``call.fired(...)``; the engine runs those first.

``triggers`` (optional) says when the rule can fire at all: groups of value set names, each
group needing at least one Condition or Observation coded in one of its sets (what
``clinical.findings`` reads before any presence check), e.g. ``(("fasciculation",),
("muscle_weakness", "muscle_atrophy"))``. The engine checks them once per call against the
record's concept index and skips a rule whose triggers are absent, so a rule must return no
card whenever they are (``tests/service/test_triggers.py`` runs every scenario with and
without skipping and compares the cards). A rule without triggers always runs.

``load()`` imports every module of ``cdshooks.cards`` whose name does not start with
``_`` and is not part of the rule framework (``FRAMEWORK``: this registry, the ``Card``
model, the order builders and the shared ``clinical`` definitions); an import error, a
duplicate id or an unknown hook or data key fails start-up.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Mapping

from ..config import RuleSettings
from ..fhir.record import Record
from ..fhir.terminology import CPT, ICD10CM, LOINC, SNOMED, valueset
from .card import INDICATORS, Card

__all__ = ["Rule", "Source", "Call", "rule", "load", "all_rules", "rules_for", "HOOKS", "GUIDELINES", "DATA_KEYS",
           "DataKey"]

HOOKS = ("patient-view", "order-select", "order-sign")


# The data a rule can read (``reads``): one prefetch key each, searched as declared here.
@dataclass(frozen=True)
class DataKey:
    resource_type: str
    sort: str | None           # search parameter for newest first
    count: int
    fixed: str = ""            # extra fixed parameters
    coded: bool = True         # filtered by the codes of the rules' value sets
    systems: tuple[str, ...] = ()  # code systems searched (empty: all)
    # A supplementary key: when it cannot be obtained its resource types are incomplete (no "no X"
    # of them), never a 412 (a client that prefetches what an older discovery listed still works).
    supplementary: bool = False


DATA_KEYS: dict[str, DataKey] = {
    "conditions": DataKey("Condition", "-recorded-date", 100, systems=(SNOMED, ICD10CM)),
    "observations": DataKey("Observation", "-date", 200, systems=(SNOMED, LOINC)),
    "medicationRequests": DataKey("MedicationRequest", "-authoredon", 100,
                                  "status=active,on-hold&_include=MedicationRequest:medication", coded=False),
    "medicationStatements": DataKey("MedicationStatement", "-effective", 100, "status=active,intended",
                                    coded=False),
    "serviceRequests": DataKey("ServiceRequest", "-authored", 50, "status=active,completed",
                               systems=(SNOMED, LOINC, CPT)),
    "procedures": DataKey("Procedure", "-date", 50, systems=(SNOMED, LOINC, CPT)),
    "diagnosticReports": DataKey("DiagnosticReport", "-date", 50, systems=(SNOMED, LOINC, CPT)),
    # Lab reports by category, not code: a panel whose own code is local (its members LOINC-coded, often
    # contained) is missed by a code search; US Core servers support patient + category.
    "labReports": DataKey("DiagnosticReport", "-date", 50,
                          "category=http://terminology.hl7.org/CodeSystem/v2-0074%7CLAB", coded=False,
                          supplementary=True),
}

# The two guideline summaries the catalogue is built from (../shared/guideline/).
GUIDELINES = {
    "000": "Muscle Twitching: Causes and Treatment (guideline summary, Dec 2025)",
    "003": "Hamstring Muscle Twitching: Causes and Clinical Approach (guideline summary)",
}


@dataclass(frozen=True)
class Source:
    """The guideline a card cites: which summary (``000`` or ``003``) and which sections."""

    guideline: str | tuple[str, ...]
    sections: tuple[str, ...] = ()
    url: str | None = None

    @property
    def label(self) -> str:
        ids = (self.guideline,) if isinstance(self.guideline, str) else self.guideline
        return "; ".join(GUIDELINES[g] for g in ids)

    def cite(self) -> str:
        return f"{self.label} — {', '.join(self.sections)}" if self.sections else self.label


@dataclass
class Call:
    """What a rule sees of one hook call."""

    hook: str
    now: datetime
    record: Record
    settings: RuleSettings = field(default_factory=RuleSettings)
    orders: list[dict] = field(default_factory=list)        # the orders to judge (order hooks)
    draft_orders: list[dict] = field(default_factory=list)  # every draft order of the session
    _fired: set[str] = field(default_factory=set)

    @property
    def patient_id(self) -> str:
        return self.record.patient_id

    def fired(self, rule_id: str) -> bool:
        """Whether a rule listed in this rule's ``after`` produced a card in this call."""
        return rule_id in self._fired


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    hooks: tuple[str, ...]
    indicator: str              # the most urgent indicator the rule can use
    reads: dict[str, tuple[str, ...]]
    source: Source
    evaluate: Callable[[Call], "Card | list[Card] | None"]
    after: tuple[str, ...] = ()
    doc: str = ""
    triggers: tuple[tuple[str, ...], ...] = ()  # groups of value sets; each group must be coded in the record

    def triggered(self, record: Record) -> bool:
        """Whether every trigger group has a Condition or Observation coded in one of its value sets
        (``Record.may_be_coded``: another patient's resource may make a rule run, never skip it)."""
        coded = record.memo(("findings-coded",),
                            lambda: record.may_be_coded("Condition") | record.may_be_coded("Observation"))
        return all(not coded.isdisjoint(group) for group in self.triggers)

    def run(self, call: Call) -> list[Card]:
        out = self.evaluate(call)
        if out is None:
            return []
        return [out] if isinstance(out, Card) else list(out)


# Modules of cdshooks.cards that are the rules' framework, not rules.
FRAMEWORK = frozenset({"registry", "card", "orders", "clinical"})

_REGISTRY: dict[str, Rule] = {}


def rule(*, id: str, title: str, hooks: Iterable[str], indicator: str, reads: Mapping[str, Iterable[str]],
         source: Source, after: Iterable[str] = (), triggers: Iterable[Iterable[str]] = ()) -> Callable:
    """Register the decorated function as a rule; returns it unchanged."""

    def register(fn: Callable) -> Callable:
        hooks_t = tuple(hooks)
        unknown = [h for h in hooks_t if h not in HOOKS]
        if unknown or not hooks_t:
            raise ValueError(f"rule {id}: unknown hooks {unknown}")
        if indicator not in INDICATORS:
            raise ValueError(f"rule {id}: unknown indicator {indicator!r}")
        if id in _REGISTRY and _REGISTRY[id].evaluate.__module__ != fn.__module__:
            raise ValueError(f"duplicate rule id {id!r}")
        module = importlib.import_module(fn.__module__)
        _REGISTRY[id] = Rule(
            id=id, title=title, hooks=hooks_t, indicator=indicator,
            reads={k: tuple(v) for k, v in reads.items()}, source=source, evaluate=fn,
            after=tuple(after), doc=(module.__doc__ or fn.__doc__ or "").strip(),
            triggers=tuple(tuple(group) for group in triggers),
        )
        return fn

    return register


def load() -> dict[str, Rule]:
    """Import every rule module once and check the registry; returns it."""
    package = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_") and info.name not in FRAMEWORK:
            importlib.import_module(f"{package.__name__}.{info.name}")
    for r in _REGISTRY.values():
        for key, names in r.reads.items():
            if key not in DATA_KEYS:
                raise ValueError(f"rule {r.id}: unknown data key {key!r}")
            for name in names:
                valueset(name)  # raises on an unknown value set
        for group in r.triggers:
            if not group:
                raise ValueError(f"rule {r.id}: an empty trigger group")
            for name in group:
                valueset(name)
        for dep in r.after:
            if dep not in _REGISTRY:
                raise ValueError(f"rule {r.id}: 'after' names unknown rule {dep!r}")
    return dict(_REGISTRY)


def all_rules() -> list[Rule]:
    return [_REGISTRY[k] for k in sorted(load())]


def rules_for(hook: str, disabled: Iterable[str] = ()) -> list[Rule]:
    """The hook's enabled rules, each after the rules it consults, otherwise by id."""
    skip = set(disabled)
    chosen = {r.id: r for r in all_rules() if hook in r.hooks and r.id not in skip}
    ordered: list[Rule] = []
    done: set[str] = set()

    def visit(r: Rule, stack: tuple[str, ...] = ()) -> None:
        if r.id in done:
            return
        if r.id in stack:
            raise ValueError(f"rule cycle: {' -> '.join(stack + (r.id,))}")
        for dep in r.after:
            if dep in chosen:
                visit(chosen[dep], stack + (r.id,))
        done.add(r.id)
        ordered.append(r)

    for rid in sorted(chosen):
        visit(chosen[rid])
    return ordered
