"""Property-based tests: the fixture patients' resources mutated element by element, and hostile bodies.

For every fixture scenario the unmutated request is answered once (the baseline). Hypothesis then
picks a scenario, one resource of its request (prefetch or draft orders), one element of that
resource (any depth) and one mutation: a wrong type, a wrong cardinality, NaN or Infinity, a huge
number or string, a deeply nested value, or the resource's id removed. The mutated request goes
through the HTTP endpoint, and:

* the answer is never a 5xx;
* no rule fails (the engine logs ``rule.failed`` and adds its "checks could not be completed" card);
* no card claims the absence of something ("No ... result", "No ... on file", "no recent ...") that
  the baseline answer did not claim absent: a mutated element makes data unreadable, never absent.

Hostile bodies (any JSON, and hook requests whose fields hold any JSON) must answer without a 5xx,
with an OperationOutcome for every refusal.

The runs are bounded and reproducible: the ``cdshooks`` Hypothesis profile (tests/conftest.py)
derandomizes and keeps no example database; ``FUZZ_EXAMPLES`` scales the example counts for a
longer run by hand.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdshooks import create_app
from cdshooks.fhir.record import CONCEPT_FIELDS
from cdshooks.fhir.terminology import valueset
from cdshooks.service.engine import INCOMPLETE_CHECKS_ID, SERVICE_IDS
from cdshooks.tryit.fixtures import for_scenario, scenarios

from ..conftest import make_settings

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)
SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))
SCENARIOS = scenarios()


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


# -- the service, once for the module ------------------------------------------------------------------
class _Failures(logging.Handler):
    """Collects the rule failures the engine logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.events: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "rule.failed":
            self.events.append(dict(getattr(record, "fields", None) or {}))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    app = create_app(make_settings(tmp_path_factory.mktemp("fuzz"), strict_rules=False, log_level="ERROR"))
    app.config["PROPAGATE_UNEXPECTED"] = False
    failures = _Failures()
    logging.getLogger("cdshooks").addHandler(failures)
    yield app, app.test_client(), failures
    logging.getLogger("cdshooks").removeHandler(failures)
    app.extensions["cdshooks"].store.dispose()


def request_for(app, sc) -> dict:
    templates = app.extensions["cdshooks"].engine.services[SERVICE_IDS[sc.hook]].prefetch
    return for_scenario(sc, templates, now=NOW)


def post(client, sc, body: dict):
    """POST the body as JSON (NaN and Infinity written as JavaScript does, as some clients send them)."""
    data = json.dumps(body, allow_nan=True)
    return client.post(f"/cds-services/{SERVICE_IDS[sc.hook]}", data=data, content_type="application/json")


# -- absence claims --------------------------------------------------------------------------------------
_ABSENCE = re.compile(r"\b(?:[Nn]o|[Nn]ever|[Nn]ot (?:done|on file|on the record))\b[^.\n:;]*")
# phrases with "no" that deny nothing: a terminology note, how an unreadable value is shown, and what the
# guideline gives (baclofen-dosing says "it has no schedule" only when cirrhosis is known absent)
_NOT_ABOUT_DATA = ("no code for", "no readable value", "no schedule")


def absence_claims(cards: list[dict]) -> set[str]:
    """Every phrase of the cards' summaries and details that states something is absent."""
    out: set[str] = set()
    for card in cards:
        for text in (card.get("summary", ""), card.get("detail", "")):
            out.update(m.group(0).strip() for m in _ABSENCE.finditer(text)
                       if not m.group(0).lower().startswith(_NOT_ABOUT_DATA))
    return out


# what an absence claim is about: words of the claim -> the value sets of that data
_CLAIM_TOPICS = {
    "potassium": ("potassium_lab",), "magnesium": ("magnesium_lab",),
    "calcium": ("calcium_total_lab", "calcium_ionized_lab"), "lgi1": ("lgi1_antibody_lab", "lgi1_test"),
    "motor neuron": ("motor_neuron_disease",), "cirrhosis": ("cirrhosis",), "cramp": ("cramp",),
    "spasticity": ("spasticity",), "neuromyotonia": ("neuromyotonia",), "emg": ("emg_ncs", "nerve_conduction"),
    "nerve conduction": ("nerve_conduction", "emg_ncs"), "mri": ("thigh_mri",), "ankle-brachial": ("abi",),
    "neurology referral": ("neurology_referral",),
}


def claim_topics(claim: str) -> set[str] | None:
    """The value sets a claim speaks of; None when its words name none of them."""
    lowered = claim.lower()
    found = {name for word, names in _CLAIM_TOPICS.items() if word in lowered for name in names}
    return found or None


def concepts_of(resource: object) -> list[dict]:
    """The main codes of a resource and of the resources it contains (a panel's results)."""
    if not isinstance(resource, dict):
        return []
    out = [resource.get(CONCEPT_FIELDS.get(str(resource.get("resourceType")), "code"))]
    for inner in resource.get("contained") or []:
        out.extend(concepts_of(inner))
    return [c for c in out if isinstance(c, dict)]


def false_absence(claims: set[str], original: dict) -> list[str]:
    """The claims that deny data the mutated resource held before it was mutated: those about its
    own concept, and any claim whose subject cannot be told (to be looked at)."""
    out = []
    for claim in sorted(claims):
        topics = claim_topics(claim)
        if topics is None or any(valueset(t).matches(c) for t in topics for c in concepts_of(original)):
            out.append(claim)
    return out


_baselines: dict[str, tuple[dict, list[dict]]] = {}


def baseline(app, client, sc) -> tuple[dict, list[dict]]:
    """The unmutated request and its cards (answered once per scenario)."""
    if sc.name not in _baselines:
        body = request_for(app, sc)
        resp = post(client, sc, body)
        assert resp.status_code == 200, (sc.name, resp.get_data(as_text=True)[:300])
        _baselines[sc.name] = (body, resp.get_json()["cards"])
    return _baselines[sc.name]


# -- mutations ---------------------------------------------------------------------------------------------
def resources_of(body: dict) -> list[tuple]:
    """Paths (into the request body) of every resource the request carries."""
    paths: list[tuple] = []
    for key, value in sorted((body.get("prefetch") or {}).items()):
        if isinstance(value, dict):
            for i, entry in enumerate(value.get("entry") or []):
                paths.append(("prefetch", key, "entry", i, "resource"))
    drafts = (body.get("context") or {}).get("draftOrders") or {}
    for i, _ in enumerate(drafts.get("entry") or []):
        paths.append(("context", "draftOrders", "entry", i, "resource"))
    return paths


def elements_of(value, prefix: tuple = ()) -> list[tuple]:
    """The path of every element inside a resource, at any depth."""
    out: list[tuple] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(prefix + (k,))
            out.extend(elements_of(v, prefix + (k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(prefix + (i,))
            out.extend(elements_of(v, prefix + (i,)))
    return out


def nested(levels: int):
    value: object = "deep"
    for n in range(levels):
        value = [value] if n % 2 else {"x": value}
    return value


MUTATIONS = {
    "integer": lambda v: 7,
    "text": lambda v: "garbage \u2603",
    "numeric text": lambda v: "4.2",
    "boolean": lambda v: True,
    "null": lambda v: None,
    "empty list": lambda v: [],
    "empty object": lambda v: {},
    "list of it": lambda v: [v],
    "two of it": lambda v: [v, v],
    "first of it": lambda v: v[0] if isinstance(v, list) and v else v,
    "object around it": lambda v: {"value": v},
    "NaN": lambda v: math.nan,
    "Infinity": lambda v: math.inf,
    "-Infinity": lambda v: -math.inf,
    "huge float": lambda v: 1.7e308,
    "huge integer": lambda v: 10 ** 400,
    "huge text": lambda v: "x" * 200_000,
    "deep": lambda v: nested(60),
}


def mutate(body: dict, resource_path: tuple, element: tuple | None, how: str) -> dict:
    out = copy.deepcopy(body)
    resource = out
    for step in resource_path:
        resource = resource[step]
    if element is None:  # the resource's id removed
        resource.pop("id", None)
        return out
    parent = resource
    for step in element[:-1]:
        parent = parent[step]
    parent[element[-1]] = MUTATIONS[how](parent[element[-1]])
    return out


@st.composite
def mutated_requests(draw, app, client):
    """(scenario, mutated body, baseline cards, the resource as it was, whether absence claims are checked,
    a description)."""
    sc = draw(st.sampled_from(SCENARIOS))
    body, cards = baseline(app, client, sc)
    targets = resources_of(body)
    if not targets:
        return sc, body, cards, {}, True, "(nothing to mutate)"
    resource_path = draw(st.sampled_from(targets))
    resource = _at(body, resource_path)
    paths = elements_of(resource)
    if draw(st.integers(0, 9)) == 0 or not paths:
        return sc, mutate(body, resource_path, None, ""), cards, resource, True, f"{resource_path}: id removed"
    element = draw(st.sampled_from(paths))
    how = draw(st.sampled_from(sorted(MUTATIONS)))
    old = _at(resource, element)
    absence = not same_kind(old, MUTATIONS[how](old))
    where = f"{sc.name}: {resource.get('resourceType')}/{resource.get('id')} {'.'.join(map(str, element))} <- {how}"
    return sc, mutate(body, resource_path, element, how), cards, resource, absence, where


def same_kind(old: object, new: object) -> bool:
    """Whether a mutation kept the JSON type (a string for a string, a finite number, or a numeric string,
    for a number): the value then says something else, validly, and may make a card say something else."""
    if isinstance(old, str) and isinstance(new, str):
        return True
    numbers = (int, float)
    if isinstance(old, numbers) and not isinstance(old, bool) and isinstance(new, str):
        try:  # a numeric string is read as its number (the tolerant reader's repair)
            new = float(new)
        except ValueError:
            return False
    if not (isinstance(old, numbers) and isinstance(new, numbers)) or isinstance(old, bool) or isinstance(new, bool):
        return False
    try:
        return math.isfinite(new)
    except OverflowError:  # an integer too large for a float: not a number a reader can use
        return False


def check(client, failures, sc, body, base_cards, original: dict, where: str, absence: bool = True) -> None:
    failures.events.clear()
    resp = post(client, sc, body)
    assert resp.status_code < 500, f"{where}: {resp.status_code} {resp.get_data(as_text=True)[:300]}"
    if resp.status_code != 200:
        assert resp.get_json()["resourceType"] == "OperationOutcome", where
        return
    cards = resp.get_json()["cards"]
    failed = [e.get("rule") for e in failures.events]
    assert not failed, f"{where}: rules failed: {failed}"
    assert INCOMPLETE_CHECKS_ID not in {c["source"]["topic"]["code"] for c in cards}, where
    if not absence:
        return
    wrong = false_absence(absence_claims(cards) - absence_claims(base_cards), original)
    assert not wrong, f"{where}: absence claimed of what the record held: {wrong}"


# -- the properties --------------------------------------------------------------------------------------
def test_every_scenario_answers_without_a_rule_failure(service):
    """The baseline itself: every unmutated scenario answers 200 and no rule fails."""
    app, client, failures = service
    failures.events.clear()
    for sc in SCENARIOS:
        baseline(app, client, sc)
    assert not failures.events


@settings(max_examples=examples(400), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutating_one_element_of_a_fixture_patient(service, data):
    app, client, failures = service
    sc, body, base_cards, original, absence, where = data.draw(mutated_requests(app, client))
    check(client, failures, sc, body, base_cards, original, where, absence=absence)


@pytest.mark.parametrize("scenario, resource_id, element, how", [
    ("demo-twitching-weakness", "demo-twitching-weakness-potassium", "valueQuantity.value", "NaN"),
    ("demo-twitching-weakness", "demo-twitching-weakness-potassium", "valueQuantity", "NaN"),
    ("mnd-red-flag-known-als", "mnd-red-flag-known-als-als", "code.text", "integer"),
    ("mnd-red-flag-known-als", "mnd-red-flag-known-als-als", "code.coding.0", "null"),
    ("radiculopathy-evaluation-emg-done", "radiculopathy-evaluation-emg-done-emg", "status", "NaN"),
    ("emg-evaluation-abnormal-emg-old", "emg-evaluation-abnormal-emg-old-emg", "performedDateTime", "integer"),
    # a contained Medication of no known type once made the FHIR model raise inside drug-induced-twitching
    ("drug-induced-twitching-moderate", "drug-induced-twitching-moderate-irinotecan", "contained.0.resourceType",
     "numeric text"),
    # an entry whose resourceType cannot be read: what it is is unknown, so no rule states absence
    ("emg-evaluation-benign-after-negative", "emg-evaluation-benign-after-negative-emg", "resourceType", "integer"),
    # an entry whose status, or whose reading, cannot be read is unreadable, not absent
    ("emg-evaluation-abnormal-emg-old", "emg-evaluation-abnormal-emg-old-emg", "status", "boolean"),
    ("emg-evaluation-abnormal-emg-old", "emg-evaluation-abnormal-emg-old-emg", "outcome", "-Infinity"),
    ("emg-evaluation-benign-after-negative", "emg-evaluation-benign-after-negative-emg", "status", "integer"),
    ("baclofen-dosing-cirrhosis-raise-select", "baclofen-dosing-cirrhosis-raise-cirrhosis", "code.coding",
     "object around it"),
    ("baclofen-dosing-cirrhosis-raise-sign", "baclofen-dosing-cirrhosis-raise-cirrhosis", "resourceType",
     "-Infinity"),
    ("baclofen-dosing-spasticity", "baclofen-dosing-spasticity-ms", "verificationStatus.coding.0.code", "boolean"),
    # the first entry of a searchset whose resourceType is null is untyped too
    ("emg-evaluation-benign-after-negative", "emg-evaluation-benign-after-negative-emg", "resourceType", "null"),
    # a draft order whose resourceType cannot be read could be the referral: no "no referral among the drafts"
    ("mnd-red-flag-emg-with-referral-sign", "mnd-red-flag-emg-with-referral-referral-draft", "resourceType",
     "-Infinity"),
])
def test_one_mutation_example(service, scenario, resource_id, element, how):
    """Minimal examples found by the property above, kept as named cases."""
    app, client, failures = service
    sc = next(s for s in SCENARIOS if s.name == scenario)
    body, base_cards = baseline(app, client, sc)
    resource_path = next(p for p in resources_of(body) if _at(body, p).get("id") == resource_id)
    path = tuple(int(step) if step.isdigit() else step for step in element.split("."))
    check(client, failures, sc, mutate(body, resource_path, path, how), base_cards, copy.deepcopy(_at(body, resource_path)),
          f"{scenario}: {resource_id} {element} <- {how}")


def _at(body: dict, path: tuple):
    for step in path:
        body = body[step]
    return body


# -- hostile bodies ----------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["hook", "hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch", "extension",
          "context.userId", "context.patientId", "context.selections", "context.draftOrders",
          "context.draftOrders.entry", "context.encounterId"]


def outcome_or_cards(resp, where: str) -> None:
    assert resp.status_code < 500, f"{where}: {resp.status_code} {resp.get_data(as_text=True)[:300]}"
    body = resp.get_json()
    if resp.status_code == 200:
        assert isinstance(body, dict)
    else:
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"], where


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, path=st.sampled_from(["/cds-services/" + s for s in SERVICE_IDS.values()]
                                                + ["/cds-services/fasciculation-patient-view/feedback"]))
def test_any_json_body_is_answered_without_a_5xx(service, value, path):
    _, client, _ = service
    resp = client.post(path, data=json.dumps(value, allow_nan=True), content_type="application/json")
    outcome_or_cards(resp, f"{path} {value!r:.200}")


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), field=st.sampled_from(FIELDS), value=json_values)
def test_a_hook_request_with_any_field_replaced_is_answered_without_a_5xx(service, data, field, value):
    app, client, _ = service
    sc = data.draw(st.sampled_from([s for s in SCENARIOS if s.hook != "patient-view"] + SCENARIOS[:5]))
    body = copy.deepcopy(baseline(app, client, sc)[0])
    target = body
    *parents, last = field.split(".")
    for step in parents:
        target = target.setdefault(step, {}) if isinstance(target, dict) else {}
    if isinstance(target, dict):
        target[last] = value
    outcome_or_cards(post(client, sc, body), f"{sc.name} {field} = {value!r:.200}")


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.one_of(json_values, st.fixed_dictionaries(
    {"card": json_values, "outcome": st.sampled_from(["accepted", "overridden", "maybe"]),
     "outcomeTimestamp": st.sampled_from(["2026-11-21T10:05:31Z", "yesterday", "2026-13-45T99:99:99Z"])},
    optional={"acceptedSuggestions": json_values, "overrideReason": json_values})), max_size=5))
def test_any_feedback_is_answered_without_a_5xx(service, items):
    _, client, _ = service
    resp = client.post("/cds-services/fasciculation-patient-view/feedback",
                       data=json.dumps({"feedback": items}, allow_nan=True), content_type="application/json")
    outcome_or_cards(resp, f"feedback {items!r:.300}")
