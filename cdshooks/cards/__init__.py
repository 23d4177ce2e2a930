"""The clinical rules and their framework.

One module per rule, named after its id, loaded by ``registry.load()``; modules whose names
start with ``_`` are helpers shared by several rules. Beside them: ``registry`` (the rule
author's API: ``@rule``, ``Call``, ``Source``; the data keys rules read), ``card`` (the
``Card`` model rules return), ``orders`` (the FHIR resources cards suggest) and
``clinical/`` (shared clinical definitions: findings, labs, medications, orders on file).
"""

from .card import INDICATORS, Action, Card, Link, Suggestion
from .registry import DATA_KEYS, HOOKS, Call, DataKey, Rule, Source, all_rules, load, rule, rules_for

__all__ = ["INDICATORS", "Action", "Card", "Link", "Suggestion", "DATA_KEYS", "HOOKS", "Call", "DataKey", "Rule",
           "Source", "all_rules", "load", "rule", "rules_for"]
