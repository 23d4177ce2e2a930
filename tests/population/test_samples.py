"""Real-world-shaped data (../shared/fhir_samples: Synthea, US Core, IPS) through patient-view.

Every patient must be answered (200, spec-valid) both with the narrow prefetch our templates
ask for and with a sloppy EHR's prefetch (every resource of each type, unfiltered). None of
these patients has twitching documented, so a card here needs a reason: the test records them
and fails on any card from a rule that needs a twitching finding.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from bench.run import prefetch_from
from cdshooks.fhir.bundles import collection, patients
from cdshooks.service.engine import SERVICE_IDS
from cdshooks.service.hook_request import build_request

from ..conftest import SHARED

SAMPLES = SHARED / "fhir_samples"
SERVICE = SERVICE_IDS["patient-view"]

pytestmark = pytest.mark.samples


def sample_patients() -> list[tuple[str, list[dict]]]:
    if not SAMPLES.is_dir():
        return []
    out = []
    for path in sorted((SAMPLES / "synthea_r4_bundles_smart").glob("*.json")) + sorted(
            (SAMPLES / "ips_bundles").glob("*.json")):
        for pid, resources in patients(json.loads(path.read_text())).items():
            out.append((f"{path.stem[:24]}/{pid[:8]}", resources))
    bulk = SAMPLES / "synthea_r4_bulk_ndjson_smart"
    if bulk.is_dir():
        resources = [json.loads(line) for p in sorted(bulk.glob("*.ndjson")) for line in p.read_text().splitlines()
                     if line.strip()]
        for pid, res in patients(resources).items():
            out.append((f"bulk/{pid[:8]}", res))
    core = SAMPLES / "us_core_examples"
    if core.is_dir():
        resources = [json.loads(p.read_text()) for p in sorted(core.glob("*.json"))]
        out.append(("us-core/all", resources))
    return out


PATIENTS = sample_patients()
if not PATIENTS:
    pytest.skip("../shared/fhir_samples is not present", allow_module_level=True)

FIRED: Counter = Counter()
EVALUATED: set[str] = set()
NOW = datetime.now(timezone.utc)
NEEDS_TWITCHING = {"mnd-red-flag", "emg-evaluation", "drug-induced-twitching", "hamstring-twitch-care",
                   "thigh-mri", "radiculopathy-evaluation"}


def _patient_id(resources: list[dict]) -> str:
    pids = [r["id"] for r in resources if r.get("resourceType") == "Patient"]
    return pids[0] if pids else "us-core-example"


@pytest.mark.parametrize("name, resources", PATIENTS, ids=[p[0] for p in PATIENTS])
@pytest.mark.parametrize("shape", ["narrow", "unfiltered"])
def test_sample_patient_is_answered(app, client, name, resources, shape):
    templates = app.extensions["cdshooks"].engine.services[SERVICE].prefetch
    pid = _patient_id(resources)
    body = build_request(collection(resources), "patient-view", templates, patient_id=pid, now=NOW)
    if shape == "unfiltered":
        body["prefetch"] = prefetch_from(resources, templates)
    resp = client.hook(SERVICE, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    fired = [c["source"]["topic"]["code"] for c in resp.get_json()["cards"]]
    if shape == "narrow":
        FIRED.update(fired)
        EVALUATED.add(name)
    assert not NEEDS_TWITCHING & set(fired), f"{name}: {fired} fired without documented twitching"


def test_every_sample_patient_was_answered_and_cards_are_reported(capsys):
    """Runs after the parametrized calls: all of them answered; prints cards per rule (see with -s)."""
    assert EVALUATED == {name for name, _ in PATIENTS}
    with capsys.disabled():
        print(f"\nsample patients: {len(PATIENTS)}; cards per rule: {dict(sorted(FIRED.items())) or 'none'}")
