"""Real data, read truthfully: real clients' request shapes, malformed elements, and data that is
present but unreadable or incomplete.

The CDS Hooks sandbox captures live in ``../shared/real-clients`` (skipped when absent); the
demo patient comes from ``fhir_fixtures``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdshooks.fhir.bundles import resolve_dates
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.service.hook_request import build_request
from cdshooks.service.prefetch import resource_types
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

EHR_SHAPES = Path(__file__).resolve().parent.parent / "data" / "ehr"


def ehr_request(app, name: str, hook: str = "patient-view", whole_sections: bool = True) -> dict:
    """The request for one EHR-shaped patient. ``whole_sections``: every prefetch key holds every resource of its
    type, as an EHR that ignores the code filter sends it (local-only codes and panels are then present)."""
    bundle = json.loads((EHR_SHAPES / f"{name}-shaped.json").read_text("utf-8"))
    templates = engine(app).services[SERVICE_IDS[hook]].prefetch
    body = build_request(bundle, hook, templates, patient_id=f"{name}-shaped", now=NOW)
    if whole_sections:
        resolved = resolve_dates([e["resource"] for e in bundle["entry"]], NOW)
        for key, template in templates.items():
            types = resource_types(template)
            found = [r for r in resolved if r["resourceType"] in types]
            body["prefetch"][key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                                     "entry": [{"resource": r} for r in found]} if key == key.split("-")[0] else None
    return body


def test_epic_shaped_record_local_codes_display_only_codings_and_string_values(app):
    cards = answer(app, ehr_request(app, "epic"))
    # the weakness is coded only locally, with a display-only coding "Leg weakness": found by name
    assert cards["mnd-red-flag"]["indicator"] == "critical"
    assert "Leg weakness" in cards["mnd-red-flag"]["detail"]
    # "<1.5" magnesium flagged L is low; a potassium judged against a range given as text is normal
    detail = cards["electrolyte-abnormal"]["detail"]
    assert "Magnesium <1.5" in detail and "Potassium" not in detail
    assert "electrolyte-check" not in cards  # potassium, magnesium and calcium (valueString "9.4 mg/dL") are there


def test_epic_shaped_magnesium_with_only_its_local_code_is_not_called_missing(app):
    body = ehr_request(app, "epic")
    for entry in body["prefetch"]["observations"]["entry"]:
        code = entry["resource"].get("code") or {}
        if code.get("text") == "MAGNESIUM":  # the LOINC coding dropped: the local urn:oid code and display remain
            code["coding"] = [c for c in code["coding"] if c.get("system", "").startswith("urn:oid:")]
    cards = answer(app, body)
    assert "Magnesium" not in cards.get("electrolyte-abnormal", {}).get("detail", "")  # its value is not used
    assert all("No magnesium" not in c["detail"] for c in cards.values())
    assert "electrolyte-check" not in cards  # potassium and calcium are there, magnesium is in doubt


def test_epic_shaped_brand_display_medication_with_a_tid_timing_code(app):
    body = ehr_request(app, "epic")
    record_json = body["prefetch"]["medicationRequests"]["entry"]
    assert any(e["resource"]["resourceType"] == "Medication" for e in record_json)
    from cdshooks.cards.clinical import active_medications
    from cdshooks.fhir.record import Record
    record = Record.from_prefetch("epic-shaped", body["prefetch"].values(), NOW)
    (use,) = active_medications(record)
    assert use.has("baclofen") and use.daily_mg == 30.0  # 1 tablet of 10 mg, TID


def test_oracle_shaped_panels_contained_results_and_comparator_strings(app):
    cards = answer(app, ehr_request(app, "oracle"))
    detail = cards["electrolyte-abnormal"]["detail"]
    assert "Potassium 3 mmol/L" in detail and "below the reference range 3.5-5.1 mmol/L" in detail
    assert "Calcium" not in detail and "Magnesium" not in detail   # "> 10 mg/dL" and ">= 2.0 mg/dL" are not low
    assert "electrolyte-check" not in cards  # the panel members count as results
    suggested = cards["electrolyte-abnormal"].get("suggestions", [])
    reasons = [r for s in suggested for a in s["actions"] for r in a["resource"].get("reasonReference", [])]
    assert all(not r["reference"].startswith("Observation/k") for r in reasons)


def test_synthea_shaped_unreadable_magnesium_is_stated_not_absent(app):
    cards = answer(app, ehr_request(app, "synthea", whole_sections=False))
    detail = cards["electrolyte-check"]["detail"]
    assert "No potassium or calcium result in the last 90 days." in detail
    assert "A magnesium result of 2026-11-26 (\u201csee comment\u201d) could not be read." in detail
    assert "No magnesium" not in detail and "magnesium result" not in cards["electrolyte-check"]["summary"]


@pytest.mark.parametrize("how", ["next-link", "uncoded-condition"])
def test_no_absence_claim_about_conditions_that_did_not_arrive_whole(app, how):
    body = demo_request(app)
    if how == "next-link":
        body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": "http://ehr.example/fhir/Condition?p=2"}]
    else:  # a Condition whose code cannot be read at all: it may be the very diagnosis
        entries(body, "conditions").append({"resource": {"resourceType": "Condition", "id": "x", "code": "G12.21",
                                                         "subject": {"reference": "Patient/demo-twitching-weakness"}}})
    card = answer(app, body)["mnd-red-flag"]
    assert card["indicator"] == "critical"  # the red flag is never lost
    assert "No motor neuron disease diagnosis" not in card["detail"]
    assert "Whether a motor neuron disease diagnosis is on the record could not be checked" in card["detail"]


def test_the_whole_record_still_allows_the_absence_claim(app):
    card = answer(app, demo_request(app))["mnd-red-flag"]
    assert "No motor neuron disease diagnosis on the record" in card["detail"]


@pytest.mark.parametrize("element, value", [("status", 5), ("status", "x"), ("status", None),
                                            ("effectiveDateTime", "99999999"), ("code", {"coding": {"a": 1}})])
def test_a_potassium_whose_status_time_or_code_cannot_be_read_is_never_called_missing(app, element, value):
    body = demo_request(app)
    potassium = resource(body, "observations", "potassium")
    potassium.pop("issued", None)
    if value is None:
        del potassium[element]
    else:
        potassium[element] = value
    cards = answer(app, body)
    for card in cards.values():
        assert "potassium" not in card["summary"].lower() or "could not" in card["summary"]
        assert "No potassium" not in card["detail"] and "No magnesium or potassium" not in card["detail"]
        assert "potassium, magnesium or calcium" not in card["detail"]


def test_an_order_of_unreadable_status_is_not_called_missing(app):
    from cdshooks.tryit.fixtures import for_scenario, scenarios

    sc = next(s for s in scenarios() if s.name == "claudication-abi-done")
    body = for_scenario(sc, engine(app).services[SERVICE_IDS[sc.hook]].prefetch, now=NOW)
    reference = answer(app, copy.deepcopy(body))
    assert "claudication-abi" not in reference  # the ABI on file addresses it
    for value in ("x", 5):
        changed = copy.deepcopy(body)
        abi = next(e["resource"] for v in changed["prefetch"].values() if isinstance(v, dict)
                   for e in v.get("entry", []) if e["resource"]["resourceType"] in ("ServiceRequest", "Procedure"))
        abi["status"] = value
        card = answer(app, changed)["claudication-abi"]  # the order no longer counts as done...
        assert "No ankle-brachial index on file" not in card["detail"]  # ...but it is never called missing
        assert "Whether an ankle-brachial index is already on file could not be checked" in card["detail"]


HOSTILE = [None, [], {}, "x", 5, math.nan, True, "9" * 400, {"a": {"b": 1}}, [[1]]]


def test_every_element_of_the_demo_patient_mutated_raises_nothing_and_never_loses_the_potassium(app):
    """Each element (and each element one level down) of each resource, replaced by hostile values:
    no rule fails (rules run strictly here), and no card ever says potassium is missing, because the
    record always holds the potassium, readable or not."""
    base = demo_request(app)
    missing_potassium = re.compile(r"\bNo\b[^.\n]*potassium", re.I)
    calls = 0
    for key, value in base["prefetch"].items():
        for i, entry in enumerate((value or {}).get("entry", [])):
            paths = [(k,) for k in entry["resource"] if k != "resourceType"]
            paths += [(k, k2) for k, v in entry["resource"].items() if isinstance(v, dict) for k2 in v]
            for path in paths:
                for hostile in HOSTILE:
                    body = copy.deepcopy(base)
                    node = body["prefetch"][key]["entry"][i]["resource"]
                    for part in path[:-1]:
                        node = node[part]
                    node[path[-1]] = hostile
                    cards = answer(app, body)
                    calls += 1
                    for card in cards.values():
                        assert not missing_potassium.search(card["summary"] + card["detail"]), (path, hostile)
    assert calls > 200
