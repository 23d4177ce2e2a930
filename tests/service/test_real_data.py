"""Real data, read truthfully: real clients' request shapes, malformed elements, and data that is
present but unreadable or incomplete.

The CDS Hooks sandbox captures live in ``../shared/real-clients`` (skipped when absent); the
demo patient comes from ``fhir_fixtures``.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdshooks.service.engine import SERVICE_IDS
from cdshooks.service.hook_request import build_request
from cdshooks.tryit.fixtures import FIXTURES_DIR

from ..conftest import SHARED
from ..spec_checks import check_response

SANDBOX = SHARED / "real-clients" / "cds-hooks-sandbox"
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)


def engine(app):
    return app.extensions["cdshooks"].engine


def capture(prefix: str) -> dict:
    if not SANDBOX.is_dir():
        pytest.skip("../shared/real-clients is not present")
    found = sorted(SANDBOX.glob(f"{prefix}-*.json"))
    if not found:
        pytest.skip(f"capture {prefix} is not present")
    return json.loads(found[0].read_text("utf-8"))


def replay(app, captured: dict) -> list[dict]:
    """The capture's body answered as of its capture time (the JWT's ``iat``)."""
    request = captured["request"]
    now = datetime.fromtimestamp(request["jwt"]["claims"]["iat"], timezone.utc)
    body = copy.deepcopy(request["body"])
    out = engine(app).answer(request["path"].rsplit("/", 1)[-1], body, now=now)
    check_response(out)  # suggested resources are strictly valid R4
    return out["cards"]


def by_rule(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


# -- the CDS Hooks sandbox ---------------------------------------------------------------------

def test_sandbox_rx_view_90_mg_baclofen_draft_gets_the_dosing_warning(app):
    captured = capture("013")
    draft = captured["request"]["body"]["context"]["draftOrders"]["entry"][0]["resource"]
    assert isinstance(draft["category"], dict), "the sandbox sends one category object (invalid R4)"
    card = by_rule(replay(app, captured))["baclofen-dosing"]
    assert card["indicator"] == "warning" and "90 mg/day" in card["summary"]
    corrected = card["suggestions"][0]["actions"][-1]["resource"]
    assert isinstance(corrected["category"], list)  # what we send back is valid R4


def test_sandbox_rx_sign_draft_gets_the_dosing_warning(app):
    card = by_rule(replay(app, capture("014")))["baclofen-dosing"]
    assert card["indicator"] == "warning"


def test_sandbox_patient_view_of_the_demo_patient(app):
    cards = by_rule(replay(app, capture("004")))
    assert cards["mnd-red-flag"]["indicator"] == "critical"
    assert cards["electrolyte-abnormal"]["indicator"] == "warning"


# -- the demo patient with malformed elements --------------------------------------------------

def demo_request(app, hook: str = "patient-view") -> dict:
    bundle = json.loads((FIXTURES_DIR / "demo-twitching-weakness.json").read_text("utf-8"))
    templates = engine(app).services[SERVICE_IDS[hook]].prefetch
    return build_request(bundle, hook, templates, patient_id="demo-twitching-weakness", now=NOW)


def answer(app, body: dict) -> dict[str, dict]:
    out = engine(app).answer(SERVICE_IDS[body["hook"]], body, now=NOW)
    check_response(out)
    return by_rule(out["cards"])


def entries(body: dict, key: str) -> list[dict]:
    return body["prefetch"][key].setdefault("entry", [])


def resource(body: dict, key: str, rid_end: str) -> dict:
    return next(e["resource"] for e in entries(body, key) if e["resource"]["id"].endswith(rid_end))


def malformed_condition(code_shape: str) -> dict:
    coding: dict = {"system": "http://snomed.info/sct", "code": "26544005", "display": "Muscle weakness"}
    if code_shape == "system-list":
        coding["system"] = ["http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"]
    elif code_shape == "code-object":
        coding["code"] = {"value": "26544005"}
    elif code_shape == "coding-object":
        return {"resourceType": "Condition", "id": "odd", "subject": {"reference": "Patient/demo-twitching-weakness"},
                "code": {"coding": {"system": 5, "code": ["a", "b"]}}}
    return {"resourceType": "Condition", "id": "odd", "subject": {"reference": "Patient/demo-twitching-weakness"},
            "code": {"coding": [coding]}}


@pytest.mark.parametrize("shape", ["system-list", "code-object", "coding-object"])
def test_demo_patient_plus_one_malformed_condition_keeps_its_critical_card(app, shape):
    body = demo_request(app)
    entries(body, "conditions").insert(0, {"resource": malformed_condition(shape)})
    cards = answer(app, body)
    assert cards["mnd-red-flag"]["indicator"] == "critical"
    assert cards["electrolyte-abnormal"]["indicator"] == "warning"


def test_an_observation_whose_status_is_a_list_still_gives_the_low_potassium_warning(app):
    body = demo_request(app)
    resource(body, "observations", "potassium")["status"] = ["final"]
    cards = answer(app, body)
    assert "Potassium 3.1 mmol/L" in cards["electrolyte-abnormal"]["detail"]


@pytest.mark.parametrize("value", [math.nan, math.inf, "garbage", {"x": 1}, [3.1, 2.0]])
def test_a_potassium_that_cannot_be_read_is_never_no_result(app, value):
    body = demo_request(app)
    resource(body, "observations", "potassium")["valueQuantity"]["value"] = value
    cards = answer(app, body)
    assert "electrolyte-abnormal" not in cards  # its value cannot be told low
    for card in cards.values():
        assert "no recent potassium" not in card["summary"].lower()
        assert "no potassium" not in card["detail"].lower()
    assert "A potassium result of" in cards["electrolyte-check"]["detail"]


def magnesium(value_string: str, flag: str | None = "L") -> dict:
    res = {"resourceType": "Observation", "id": "mg", "status": "final",
           "subject": {"reference": "Patient/demo-twitching-weakness"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9", "display": "Magnesium"}]},
           "effectiveDateTime": "2026-11-25T08:00:00Z", "valueString": value_string}
    if flag:
        res["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                              "code": flag}]}]
    return res


def test_a_magnesium_of_less_than_1_5_is_low_not_absent(app):
    body = demo_request(app)
    entries(body, "observations").append({"resource": magnesium("<1.5 mg/dL")})
    cards = answer(app, body)
    detail = cards["electrolyte-abnormal"]["detail"]
    assert "Magnesium <1.5 mg/dL on 2026-11-25" in detail
    assert "magnesium" not in cards.get("electrolyte-check", {}).get("summary", "")


def test_prefetch_page_left_unread_makes_the_key_incomplete(app):
    body = demo_request(app)
    body["prefetch"]["observations"]["link"] = [{"relation": "next", "url": "http://ehr.example/fhir?page=2"}]
    cards = answer(app, body)
    # potassium is still read and judged, but nothing is said to be missing from the observations
    assert "electrolyte-abnormal" in cards
    for card in cards.values():
        assert "no recent" not in card["summary"].lower()
        assert "No magnesium" not in card["detail"] and "No calcium" not in card["detail"]


@pytest.mark.parametrize("value", ["x", 5, [], {}, {"resourceType": "Patient", "id": "demo-twitching-weakness"},
                                   {"resourceType": "Bundle", "entry": 5}])
def test_unusable_prefetch_values_are_missing_not_no_data(app, value):
    body = demo_request(app)
    body["prefetch"]["observations"] = value
    body.pop("fhirServer", None)
    with pytest.raises(Exception) as err:
        engine(app).answer(SERVICE_IDS["patient-view"], body, now=NOW)
    assert type(err.value).__name__ == "DataUnobtainable"
    assert "prefetch.observations" in err.value.expression


def test_null_and_an_empty_searchset_mean_no_data(app):
    body = demo_request(app)
    body["prefetch"]["observations"] = None
    body["prefetch"]["medicationRequests"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    cards = answer(app, body)
    assert "No potassium, magnesium or calcium result" in cards["electrolyte-check"]["detail"]


# -- EHR-shaped resources ----------------------------------------------------------------------

EHR_SHAPES = Path(__file__).resolve().parent.parent / "data" / "ehr_shapes.json"
