"""The reader's fast path (``models._fast``) agrees with the models: a resource it reads without
building a model is one the models validate clean, unchanged.

The corpus is every resource the project holds (fixture patients, EHR-shaped patients, the
sandbox's captured requests) and, where ../shared is present, US Core examples and Synthea
patients. Hypothesis then changes primitive values of those resources while keeping each value's
JSON type, so the shape stays known and only the per-value checks decide: whenever the fast path
says "valid", the full path must say so too.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdshooks.fhir import models

REPO = Path(__file__).resolve().parent.parent.parent
SHARED = REPO.parent / "shared"
SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))


def _resources_in(value: object):
    if isinstance(value, dict):
        if isinstance(value.get("resourceType"), str) and value.get("resourceType") != "Bundle":
            yield value
        for item in value.values():
            yield from _resources_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _resources_in(item)


def _corpus() -> list[dict]:
    files = sorted((REPO / "fhir_fixtures").glob("*.json")) + sorted((REPO / "tests" / "data").rglob("*.json"))
    files += sorted((SHARED / "real-clients").rglob("*.json"))[:20]
    files += sorted((SHARED / "fhir_samples" / "us_core_examples").glob("*.json"))[:60]
    files += sorted((SHARED / "fhir_samples" / "synthea_r4_bundles_smart").glob("*.json"))[:2]
    out, seen = [], set()
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        for resource in _resources_in(data):
            if models._model_class(resource["resourceType"]) is None:
                continue
            key = json.dumps(resource, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(resource)
    return out


CORPUS = _corpus()
CLEAN = [r for r in CORPUS if not models._read_fully(copy.deepcopy(r)).problems]


@pytest.fixture(autouse=True)
def fresh_plans(monkeypatch):
    monkeypatch.setattr(models, "_plans", {})
    monkeypatch.setattr(models, "_unordered", {})


def test_the_corpus_is_broad():
    types = {r["resourceType"] for r in CLEAN}
    assert len(CLEAN) > 100 and {"Observation", "Condition", "MedicationRequest", "Procedure"} <= types


def test_a_clean_resource_is_read_fast_the_second_time_and_the_same():
    fast = 0
    for resource in CLEAN:
        first = models.read(resource)
        assert first.problems == [] and first.data is resource
        again = models.read(copy.deepcopy(resource))
        assert again.problems == [] and again.data == resource
        if again.lazy:
            fast += 1
            assert again.model is not None  # built on first use
    assert fast >= 0.9 * len(CLEAN), f"only {fast} of {len(CLEAN)} clean resources were read fast"


def test_a_faulty_resource_never_takes_the_fast_path():
    for resource in CORPUS:
        full = models._read_fully(copy.deepcopy(resource))
        models.read(resource)
        reading = models.read(copy.deepcopy(resource))
        if full.problems:
            assert not reading.lazy and reading.problems == full.problems


def test_shapes_hold_no_values():
    for resource in CLEAN:
        models.read(resource)
        models.read(resource)
    shapes = repr(list(models._plans))
    for value in ("2823-3", "http://loinc.org", "final", "Patient/", "mmol/L", "2026-"):
        assert value not in shapes


def test_what_is_learnt_is_bounded(monkeypatch):
    """At most _PLAN_LIMIT shapes; past it the half learnt first makes room, so learning goes on."""
    monkeypatch.setattr(models, "_PLAN_LIMIT", 4)
    for i in range(10):  # ten shapes: with and without an id, a value, a second coding...
        resource: dict = {"resourceType": "Observation", "status": "final", "code": {"coding": [
            {"system": "http://loinc.org", "code": "2823-3"}] * (1 + i % 4)}}
        if i % 2:
            resource["valueInteger"] = i
        if i >= 4:
            resource["id"] = f"o{i}"
        models.read(resource)
        assert len(models._plans) <= 4
    assert models.read(resource).lazy is True  # the last shape learnt is known
    first = {"resourceType": "Observation", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}}
    assert models.read(first).lazy is False  # the first made room: read the full way, and learnt again


def test_a_resource_with_very_many_values_is_read_the_full_way():
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "panel"},
              "contained": [{"resourceType": "Observation", "id": f"m{i}", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                             "valueQuantity": {"value": 4.1, "unit": "mmol/L"}} for i in range(200)]}
    for _ in range(3):
        reading = models.read(report)
        assert reading.problems == [] and not reading.lazy
    assert models._plans == {}


# -- the same shapes, other values -----------------------------------------------------------------
_TEXT = st.one_of(
    st.sampled_from(["", " ", "final", " final", "final ", "a  b", "2026-13-45", "2026-02-30T25:00:00Z",
                     "2026", "2026-11", "2026-11-29", "2026-11-29T09:00:00", "2026-11-29T09:00:00+01:00",
                     "urn:uuid:x", "http://loinc.org", "Patient/1", "#c1", "1.5", "-0", "1e3", "true", "\t",
                     "x\ny", "12345678901234567890123456789012345678901234567890123456789012345", "\u00e9", "a" * 300]),
    st.text(max_size=20),
)
_NUMBER = st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 1, 0.0, 1e400, -0.0]))


def _leaf_paths(value: object, path: tuple = ()):
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "resourceType":
                yield from _leaf_paths(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaf_paths(item, path + (i,))
    elif value is not None:
        yield path


def _set(value: object, path: tuple, new: object) -> None:
    for part in path[:-1]:
        value = value[part]  # type: ignore[index]
    value[path[-1]] = new  # type: ignore[index]


@st.composite
def _same_shape(draw):
    resource = copy.deepcopy(draw(st.sampled_from(CLEAN)))
    paths = list(_leaf_paths(resource))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)) if paths else []:
        old = _get(resource, path)
        if isinstance(old, bool):
            new: object = draw(st.booleans())
        elif isinstance(old, int):
            new = draw(_NUMBER.filter(lambda x: isinstance(x, int) and not isinstance(x, bool)))
        elif isinstance(old, float):
            new = draw(_NUMBER.filter(lambda x: isinstance(x, float)))
        else:
            new = draw(_TEXT)
        _set(resource, path, new)
    return resource


def _get(value: object, path: tuple) -> object:
    for part in path:
        value = value[part]  # type: ignore[index]
    return value


@settings(max_examples=max(1, int(600 * SCALE)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(resource=_same_shape())
def test_fast_valid_means_valid(resource):
    """The fast path never calls valid what the models refuse, and reads it unchanged."""
    for original in CLEAN:
        if original["resourceType"] == resource["resourceType"]:
            models.read(original)  # learn the shapes of this type
    fast, _shape = models._fast(resource)
    if fast is None:
        return
    full = models._read_fully(copy.deepcopy(resource))
    assert full.problems == [], (full.problems, resource)
    assert full.data == resource and fast.data is resource
    assert fast.model is not None


def _reordered(value: object, order) -> object:
    """``value`` with each object's elements in the order ``order`` gives (lists keep theirs)."""
    if isinstance(value, dict):
        return {key: _reordered(value[key], order) for key in order(list(value))}
    if isinstance(value, list):
        return [_reordered(item, order) for item in value]
    return value


def test_a_clean_resource_in_another_element_order_is_read_fast_at_first_sight():
    fast = 0
    for resource in CLEAN:
        models.read(resource)
        backwards = _reordered(resource, lambda keys: keys[::-1])
        reading = models.read(backwards)
        assert reading.problems == [] and reading.data is backwards
        if reading.lazy:
            fast += 1
            assert reading.model is not None and models.validation_errors(backwards) == []
    assert fast >= 0.9 * len(CLEAN), f"only {fast} of {len(CLEAN)} reordered resources were read fast"


def test_another_order_is_no_licence_for_another_shape_or_a_bad_value():
    learnt = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
              "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82470000"}]}}
    models.read(learnt)
    same = {"code": {"coding": [{"code": "82470000", "system": "http://snomed.info/sct"}]},
            "subject": {"reference": "Patient/p2"}, "id": "c2", "resourceType": "Condition"}
    assert models.read(same).lazy is True
    two_codings = {"code": {"coding": [{"code": "82470000", "system": "http://snomed.info/sct"}] * 2},
                   "subject": {"reference": "Patient/p2"}, "id": "c3", "resourceType": "Condition"}
    assert models.read(two_codings).lazy is False  # a list of another length: another shape
    bad_id = {"subject": {"reference": "Patient/p2"}, "id": "c 4!", "resourceType": "Condition",
              "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82470000"}]}}
    reading = models.read(bad_id)
    assert reading.lazy is False and [str(p) for p in reading.problems] == ["Condition.id: dropped"]
    renamed = {"code": {"coding": [{"system": "http://snomed.info/sct", "kode": "82470000"}]}, "id": "c6",
               "subject": {"reference": "Patient/p2"}, "resourceType": "Condition"}
    assert models.read(renamed).lazy is False  # an element of another name: another shape
    no_subject = {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "82470000"}]}, "id": "c5",
                  "resourceType": "Condition"}
    assert models.read(no_subject).model is None  # the required subject missing: never read fast


@settings(max_examples=max(1, int(300 * SCALE)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(resource=_same_shape(), seed=st.randoms(use_true_random=False))
def test_fast_valid_means_valid_in_any_element_order(resource, seed):
    """A shape learnt in one order reads another order fast only when the models agree it is valid."""
    for original in CLEAN:
        if original["resourceType"] == resource["resourceType"]:
            models.read(original)
    shuffled = _reordered(resource, lambda keys: seed.sample(keys, len(keys)))
    fast, _shape = models._fast(shuffled)
    if fast is None:
        return
    full = models._read_fully(copy.deepcopy(shuffled))
    assert full.problems == [], (full.problems, shuffled)
    assert full.data == shuffled and fast.data is shuffled


def test_outbound_checks_agree_with_the_models():
    """``invalid_paths`` (our suggested updates) takes the fast path only for what is valid."""
    draft = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "baclofen 10 mg"},
             "dosageInstruction": [{"text": "10 mg three times daily"}]}
    assert models.invalid_paths(draft) == []
    assert models.invalid_paths(copy.deepcopy(draft)) == []  # the shape is known now
    for status, bad in (("draft ", True), ("", True), ("active", False)):
        changed = dict(draft, status=status)
        assert bool(models.invalid_paths(changed)) is bad, status
        assert models.invalid_paths(changed) == (["status"] if bad else [])
