"""A lab panel whose own code is local only (an EHR's urn:oid code, members LOINC-coded) reached through the
code-filtered prefetch: found through the lab reports key (category LAB), its members read as results."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from cdshooks.service.engine import SERVICE_IDS
from cdshooks.service.hook_request import build_request

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)
PATIENT = "panel-local"
LOCAL = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.25"
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}


def member(rid: str, loinc: str, value: float, unit: str) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def bundle(category: bool = True, contained: bool = True) -> dict:
    members = [member("k", "2823-3", 3.0, "mmol/L"), member("mg", "19123-9", 2.0, "mg/dL"),
               member("ca", "17861-6", 9.4, "mg/dL")]
    report = {"resourceType": "DiagnosticReport", "id": "bmp-local", "status": "final",
              "code": {"coding": [{"system": LOCAL, "code": "BMPMG", "display": "BMP + MAGNESIUM"}]},
              "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": "$now-3d"}
    if category:
        report["category"] = [LAB]
    entries = [{"resource": {"resourceType": "Patient", "id": PATIENT}},
               {"resource": {"resourceType": "Condition", "id": "tw", "subject": {"reference": f"Patient/{PATIENT}"},
                             "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                                      "condition-clinical", "code": "active"}]},
                             "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82470000"}]},
                             "onsetDateTime": "$now-10d"}}]
    if contained:
        report["contained"] = members
        report["result"] = [{"reference": f"#{m['id']}"} for m in members]
    else:
        report["result"] = [{"reference": f"Observation/{m['id']}"} for m in members]
        for m in copy.deepcopy(members):
            m.update(subject={"reference": f"Patient/{PATIENT}"}, effectiveDateTime="$now-3d")
            entries.append({"resource": m})
    entries.append({"resource": report})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def answer(app, body: dict) -> dict[str, dict]:
    out = app.extensions["cdshooks"].engine.answer(SERVICE_IDS["patient-view"], body, now=NOW)
    return {c["source"]["topic"]["code"]: c for c in out["cards"]}


def request(app, **shape) -> dict:
    templates = app.extensions["cdshooks"].engine.services[SERVICE_IDS["patient-view"]].prefetch
    return build_request(bundle(**shape), "patient-view", templates, patient_id=PATIENT, now=NOW)


def test_the_prefetch_asks_for_lab_reports_by_category(app):
    templates = app.extensions["cdshooks"].engine.services[SERVICE_IDS["patient-view"]].prefetch
    assert templates["labReports"].startswith("DiagnosticReport?patient={{context.patientId}}&category=")
    assert "v2-0074%7CLAB" in templates["labReports"] and "code=" not in templates["labReports"]


@pytest.mark.parametrize("contained", [True, False])
def test_a_local_coded_panel_is_reached_and_its_members_read(app, contained):
    body = request(app, contained=contained)
    reports = [e["resource"]["id"] for k, v in body["prefetch"].items() if v for e in v.get("entry", [])
               if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert "bmp-local" in reports  # not by its code (local), by its category
    assert all(e["resource"]["id"] != "bmp-local" for e in (body["prefetch"]["diagnosticReports"] or {}).get("entry", []))
    cards = answer(app, body)
    assert "Potassium 3 mmol/L" in cards["electrolyte-abnormal"]["detail"]   # the member's low potassium
    assert "electrolyte-check" not in cards                                  # K, Mg and Ca all there


def test_a_panel_without_the_lab_category_and_with_a_local_code_is_not_reached(app):
    """The limit (README, Known gaps): neither its code nor its category is searched, so it is not seen."""
    body = request(app, category=False)
    reports = [e["resource"]["id"] for v in body["prefetch"].values() if v for e in v.get("entry", [])]
    assert "bmp-local" not in reports
    assert "No potassium, magnesium or calcium result" in answer(app, body)["electrolyte-check"]["detail"]


def test_lab_reports_that_cannot_be_obtained_leave_reports_incomplete_not_412(app):
    """A supplementary key: a client that prefetches what an older discovery listed still gets an answer,
    and no card says a lab result is absent (the reports by category did not arrive)."""
    body = request(app)
    for key, value in body["prefetch"].items():  # no lab data at all in this request
        if key in ("observations", "diagnosticReports", "labReports"):
            body["prefetch"][key] = None
    assert "No potassium, magnesium or calcium result" in answer(app, body)["electrolyte-check"]["detail"]
    del body["prefetch"]["labReports"]  # not sent, and no fhirServer to fetch it from
    cards = answer(app, body)  # answered, not 412
    assert all("No potassium" not in c["detail"] for c in cards.values())
