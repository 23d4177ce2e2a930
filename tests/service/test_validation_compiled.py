"""The compiled schema check agrees with jsonschema on every body: it accepts exactly what
jsonschema accepts (a body it refuses is then judged, and its field named, by jsonschema)."""

from __future__ import annotations

import copy
import random

import fastjsonschema
import pytest

from cdshooks.service.errors import InvalidRequest
from cdshooks.service.validation import compiled, validate, validator

SCHEMAS = ["hook-request", "context-patient-view", "context-order-select", "context-order-sign", "feedback"]

GOOD = {
    "hook-request": {"hook": "patient-view", "hookInstance": "d1577c69", "fhirServer": "https://ehr.example.org/fhir",
                     "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                           "scope": "patient/*.read", "subject": "cds", "patient": "p1"},
                     "context": {"userId": "Practitioner/1", "patientId": "p1"}, "prefetch": {"a": None}},
    "context-patient-view": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
    "context-order-select": {"userId": "Practitioner/1", "patientId": "p1", "selections": ["MedicationRequest/m1"],
                             "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {}}]}},
    "context-order-sign": {"userId": "Practitioner/1", "patientId": "p1",
                           "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {}}]}},
    "feedback": {"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                               "acceptedSuggestions": [{"id": "s1"}]},
                              {"card": "c2", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                               "overrideReason": {"reason": {"code": "x", "system": "y"}, "userComment": "z"}}]},
}

ODD = [None, True, False, 0, 1, -1, 1.0, 1.5, "", "x", "Practitioner/1", "https://a.example", "http://b", "Bearer",
       "accepted", "overridden", [], [1], ["A/b"], ["x"], {}, {"resourceType": "Bundle"}, {"a": 1}, float("nan")]


def _paths(value, here=()):
    yield here
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, here + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, here + (i,))


def _mutations(good: dict, rnd: random.Random, n: int):
    paths = [p for p in _paths(good) if p]
    for _ in range(n):
        body = copy.deepcopy(good)
        for _ in range(rnd.randint(1, 3)):
            path = rnd.choice(paths)
            parent = body
            try:
                for step in path[:-1]:
                    parent = parent[step]
                action = rnd.random()
                if action < 0.3 and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = copy.deepcopy(rnd.choice(ODD))
            except (KeyError, IndexError, TypeError):
                continue
        yield body


@pytest.mark.parametrize("name", SCHEMAS)
def test_compiled_check_accepts_exactly_what_jsonschema_accepts(name):
    rnd = random.Random(name)
    good = GOOD[name]
    assert validator(name).is_valid(good)
    bodies = [good, None, [], "x", {}] + list(_mutations(good, rnd, 1500))
    valid = 0
    for body in bodies:
        expected = validator(name).is_valid(body)
        try:
            compiled(name)(body)
            got = True
        except fastjsonschema.JsonSchemaException:
            got = False
        assert got == expected, body
        valid += expected
    assert 0 < valid < len(bodies)  # both sides were exercised


def test_an_invalid_body_still_names_its_field():
    body = copy.deepcopy(GOOD["context-patient-view"])
    del body["patientId"]
    with pytest.raises(InvalidRequest) as err:
        validate(body, "context-patient-view", prefix="context")
    assert err.value.expression == ["context.patientId"]
