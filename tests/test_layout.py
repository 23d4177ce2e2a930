"""The package's layout: each subpackage's public names, and imports that only run downward.

Layers, top to bottom: cli -> population -> tryit -> service -> cards -> fhir; trust and store
beside them; config, logs and metrics at the bottom. The population runners may build the whole app
(``create_app``) to answer calls in-process. A module may import its own subpackage and those
below it, never one above.
"""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cdshooks"

PUBLIC = {
    "cdshooks": ["create_app"],
    "cdshooks.service": ["SERVICE_IDS", "Engine", "DataUnobtainable", "InvalidRequest", "ServiceError",
                         "Unauthenticated", "UnknownService", "operation_outcome", "InputError", "build_request",
                         "hook_request", "expand_template", "gather", "templates_for", "validate"],
    "cdshooks.cards": ["INDICATORS", "Action", "Card", "Link", "Suggestion", "DATA_KEYS", "HOOKS", "Call", "DataKey",
                       "Rule", "Source", "all_rules", "load", "rule", "rules_for"],
    "cdshooks.fhir": ["patients", "resolve_dates", "FetchError", "FhirClient", "Record", "CPT", "ICD10CM", "LOINC",
                      "RXNORM", "SNOMED", "UCUM", "valueset"],
    "cdshooks.trust": ["Issuer", "load_issuers", "mint", "Claims", "Unauthorized", "Verifier"],
    "cdshooks.store": ["IssuedCard", "Store", "StoreUnavailable"],
    "cdshooks.tryit": ["FIXTURES_DIR", "Scenario", "for_scenario", "scenarios"],
    "cdshooks.serving": [],
    "cdshooks.population": ["Answer", "Service", "cards_table", "simulate"],
}

# What each part may import (besides itself); anything else is an upward or sideways import.
ALLOWED = {
    "config": set(),
    "logs": set(),
    "metrics": set(),
    "store": {"config", "logs", "metrics"},
    "trust": {"config", "logs", "metrics", "store"},
    "fhir": {"config", "logs", "metrics"},
    "cards": {"fhir", "config", "logs"},
    "service": {"cards", "fhir", "trust", "store", "config", "logs", "metrics"},
    "tryit": {"service", "cards", "fhir", "store", "config", "logs"},
    "population": {"__init__", "tryit", "service", "cards", "fhir", "trust", "store", "config", "logs"},
    "cli": {"population", "tryit", "service", "cards", "fhir", "trust", "store", "config", "logs"},
    "gunicorn_conf": {"service", "store", "metrics"},
    "serving": {"config", "logs"},
    "spark_submit": {"cli"},
    "__init__": {"service", "cards", "fhir", "trust", "store", "tryit", "config", "logs", "metrics"},
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_names_are_pinned(name):
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(PUBLIC[name])
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_parts(path: Path) -> set[str]:
    """The top-level parts of cdshooks that ``path`` imports (relative and absolute imports)."""
    tree = ast.parse(path.read_text("utf-8"))
    here = list(path.relative_to(PACKAGE).parent.parts)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = base + (node.module.split(".") if node.module else [])
                names = [target] if target else [[a.name] for a in node.names]
            elif (node.module or "").startswith("cdshooks"):
                target = node.module.split(".")[1:]
                names = [target] if target else [[a.name] for a in node.names]
            else:
                continue
            found |= {n[0] if (PACKAGE / n[0]).exists() or (PACKAGE / f"{n[0]}.py").exists() else "__init__"
                      for n in names if n}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("cdshooks.")}
    return found


def test_imports_only_run_downward():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = _part(path)
        for target in _imported_parts(path) - {part}:
            if target not in ALLOWED.get(part, set()):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_every_part_is_known():
    parts = {_part(p) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(ALLOWED), parts - set(ALLOWED)
