"""Benchmark: hook-call latency and throughput over HTTP, as ratios against floors measured in the same run.

Starts two gunicorn servers on free loopback ports, with the same worker count and worker class:

* the service, as ``make serve`` runs it (development settings, where the floor route exists,
  authentication off), which also answers ``POST /_bench/parse``: the project's own floor, a route
  of the same app that only parses the body;
* the bare floor (``bench/floor_app.py``): a minimal Flask app whose one route parses the body with
  the standard ``json`` module, the floor of any Python service on this stack.

Requests are paired: bare floor, own floor and service are called in turn, one request each, the
order rotating from round to round, so a burst of load from elsewhere on the machine hits all three
alike. Each request opens its own connection, for all three alike. Each record is sent as many
bodies in turn, each with its times moved by its own few seconds (``bodies_of``): no call reads a
time an earlier call read, as with a new patient each time, so no cache of values flatters the
service (``--variants 1`` sends one body throughout, to show what such caches save).

Records (``patient-view``; every record has a fasciculation and a cramp, so most rules run):

* typical: ~110 KB, 241 labs and vitals (6 codes) drawn in panels over the last two months, every
  resource of each searched type;
* large: ~3,000 lab results (potassium, magnesium, calcium, albumin) over 12 years, a narrow prefetch
  (only the codes the service searches for);
* sloppy: every Observation of a diverse history (vitals, blood pressure panels, blood counts,
  chemistry, lipids, smoking status, questionnaires: ~60 codes), ~2.4 MB, the code filter ignored;
* synthea: the Synthea patient of ../shared/fhir_samples nearest 1.1 MB, when present;
* 8 clients: the typical record sent by 8 concurrent clients, in alternating phases per server;
* sweep: the sloppy shape at 100 to 30,000 Observations; the per-resource slope is a least-squares
  fit of p50 against the number of resources.

Before anything else, one typical call per worker is sent to a fresh service, all at once: the
"first calls" rows compare that round with later rounds of the same shape (after 3 calls per
worker, three rounds; their median), each round of a body not sent before, so that every round
reads times not seen before ("no cold first call"). Every round follows the same quiet time
(``QUIET_SECONDS`` with no worker using CPU): on this virtual machine a call costs more CPU the
longer the machine idled before it (one worker, typical record: 12-20 ms after 0.4 s idle, 25-50 ms
after 3 s, against about 4 ms back to back), so rounds after unequal pauses would measure the pauses.
The rows give wall time (the slowest call of a round, where queueing on the cores shows too), the
CPU the workers spent per call (every thread, from /proc), which queueing does not change, and their
minor page faults per call (memory a worker writes for the first time: a page it shares with the
master is copied then), which the machine's noise does not move. One round of a few calls moves a
lot from run to run (0.4x to 2x on this 2-core machine), so it is measured on ``--starts`` fresh
services (default 5) and the rows show the median with the lowest and highest ratio.

    .venv/bin/python bench/run.py [--rounds 150] [--seconds 12] [--workers N] [--variants N] [--json results.json]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO.parent / "shared" / "fhir_samples" / "synthea_r4_bundles_smart"
SERVICE = "/cds-services/fasciculation-patient-view"
PATIENT = "Patient/bench"
LOINC, SNOMED, ICD10 = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# Targets of issue 12, as ratios service / bare floor (latency) or service / floor (throughput).
TARGETS = {"typical": 1.5, "large": 1.1, "sloppy": 1.25}
THROUGHPUT_TARGET = 0.6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gunicorn_settings() -> tuple[int, str, int]:
    """(workers, worker class, threads) the service's gunicorn configuration chooses on this machine."""
    sys.path.insert(0, str(REPO))
    from cdshooks import gunicorn_conf

    return int(gunicorn_conf.workers), str(gunicorn_conf.worker_class), int(getattr(gunicorn_conf, "threads", 1))


def _wait_ready(proc: subprocess.Popen, port: int, name: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{name}: gunicorn exited during start-up")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"{name}: gunicorn did not answer /healthz within 90 s")


def start_service(port: int, workdir: Path, workers: int) -> subprocess.Popen:
    env = dict(os.environ, CDSHOOKS_HOST="127.0.0.1", CDSHOOKS_PORT=str(port), CDSHOOKS_ENV="development",
               CDSHOOKS_AUTH="off", CDSHOOKS_LOG_LEVEL="INFO", CDSHOOKS_INSTANCE_PATH=str(workdir),
               CDSHOOKS_PUBLIC_URL=f"http://127.0.0.1:{port}", CDSHOOKS_WORKERS=str(workers),
               CDSHOOKS_MAX_BODY_BYTES=str(64 * 1024 * 1024))
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(gunicorn), "-c", "python:cdshooks.gunicorn_conf", "cdshooks:create_app()"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_ready(proc, port, "service")
    return proc


def _all_workers_up(proc: subprocess.Popen, workers: int, seconds: float = 30) -> None:
    """Wait until gunicorn has forked all its workers (where /proc says), so that the first calls
    measure the workers and not their boot."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + seconds
    while children.exists() and len(children.read_text().split()) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)


def start_floor(port: int, workers: int, worker_class: str, threads: int) -> subprocess.Popen:
    """The bare floor on gunicorn's own worker of the service's kind (the project's worker is a
    threaded worker that buffers each request: the floor gets the stock threaded worker)."""
    if worker_class.startswith("cdshooks."):
        worker_class = "gthread" if threads > 1 else "sync"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(gunicorn), "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", worker_class,
                             "--threads", str(threads), "--log-level", "warning", "bench.floor_app:app"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_ready(proc, port, "floor")
    return proc


# -- records ----------------------------------------------------------------------------
def _searchset(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"urn:uuid:{r.get('id', uuid.uuid4())}", "resource": r} for r in resources]}


def prefetch_from(resources: list[dict], templates: dict[str, str]) -> dict:
    """Every resource of a template's type under the first key of that type (a referenced Medication
    beside the MedicationRequests); the other keys get empty searchsets."""
    first: dict[str, str] = {}
    for key in sorted(templates):
        first.setdefault(templates[key].split("?", 1)[0], key)
    first.setdefault("Medication", first.get("MedicationRequest", ""))
    grouped: dict[str, list[dict]] = {k: [] for k in templates}
    for r in resources:
        key = first.get(r.get("resourceType"))
        if key in grouped:
            grouped[key].append(r)
    return {k: _searchset(v) for k, v in grouped.items()}


def _conditions() -> list[dict]:
    return [
        {"resourceType": "Condition", "id": "c-fasc", "subject": {"reference": PATIENT},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": SNOMED, "code": "82470000", "display": "Muscle fasciculation"}]},
         "onsetDateTime": "2026-08-01"},
        {"resourceType": "Condition", "id": "c-cramp", "subject": {"reference": PATIENT},
         "code": {"coding": [{"system": ICD10, "code": "R25.2"}]}, "onsetDateTime": "2026-09-01"},
    ]


def _when(i: int, years: int = 15, per_draw: int = 5) -> str:
    """When result ``i`` was drawn: ``per_draw`` results share a time (a panel), draws spread back
    from 2026-11 over about ``years`` years, each at its own time of day."""
    draw = i // per_draw
    hours = draw * years * 8760 // 4000
    return (datetime(2026, 11, 1, 8, tzinfo=timezone.utc) - timedelta(hours=hours, minutes=draw % 60)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def typical_resources(target_bytes: int, seed: int = 7) -> list[dict]:
    """Twitching and cramps, then labs and vitals (6 codes) up to ``target_bytes``, drawn in panels back
    from 2026-11 as ``_when`` spreads them (about two months for ~110 KB: every result in a 90-day window)."""
    rnd = random.Random(seed)
    out = _conditions()
    size, i = len(json.dumps(out)), 0
    codes = [("6298-4", "mmol/L", 3.2, 5.2), ("2947-0", "mmol/L", 135, 145), ("49765-1", "mg/dL", 8.4, 10.4),
             ("8867-4", "/min", 55, 95), ("8480-6", "mm[Hg]", 100, 150), ("29463-7", "kg", 60, 90)]
    while size < target_bytes:
        code, unit, lo, hi = codes[i % len(codes)]
        obs = {"resourceType": "Observation", "id": f"o{i}", "status": "final",
               "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
               "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": PATIENT},
               "effectiveDateTime": _when(i),
               "valueQuantity": {"value": round(rnd.uniform(lo, hi), 2), "unit": unit, "system": UCUM, "code": unit}}
        out.append(obs)
        size += len(json.dumps(obs))
        i += 1
    return out


_LABS = [("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.0, 5.4),
         ("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", "mg/dL", 1.5, 2.6),
         ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.2, 10.6),
         ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.2, 5.1),
         ("1994-3", "Calcium.ionized [Moles/volume] in Blood", "mmol/L", 1.1, 1.35)]


def _lab(i: int, code: str, display: str, unit: str, value: float, category: str = "laboratory",
         export: bool = True) -> dict:
    """A result; ``export`` adds what bulk exports carry beside it (meta, text, encounter, issued)."""
    obs = {"resourceType": "Observation", "id": f"lab{i}", "status": "final",
           "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
           "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
           "subject": {"reference": PATIENT}, "effectiveDateTime": _when(i, 12),
           "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}
    if export:
        obs["meta"] = {"lastUpdated": _when(i, 12)}
        obs["category"][0]["coding"][0]["display"] = category.replace("-", " ").title()
        obs["code"]["text"] = display
        obs["encounter"] = {"reference": f"Encounter/e{i // 5}"}
        obs["issued"] = _when(i, 12)
    return obs


def large_resources(n_labs: int = 3000, seed: int = 11) -> list[dict]:
    """A narrow prefetch of a long lab history: only the electrolyte and albumin codes the service searches."""
    rnd = random.Random(seed)
    out = _conditions()
    for i in range(n_labs):
        code, display, unit, lo, hi = _LABS[i % len(_LABS)]
        out.append(_lab(i, code, display, unit, round(rnd.uniform(lo, hi), 2), export=False))
    return out


_DIVERSE = _LABS + [
    ("8867-4", "Heart rate", "/min", 55, 100), ("9279-1", "Respiratory rate", "/min", 12, 20),
    ("8310-5", "Body temperature", "Cel", 36.1, 37.8), ("29463-7", "Body Weight", "kg", 55, 110),
    ("8302-2", "Body Height", "cm", 150, 195), ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 38),
    ("2708-6", "Oxygen saturation in Arterial blood", "%", 92, 100),
    ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}", 0, 10),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.5, 11),
    ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 3.9, 5.8),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11, 17.5),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 34, 52),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", 78, 100),
    ("785-6", "MCH [Entitic mass] by Automated count", "pg", 26, 34),
    ("786-4", "MCHC [Mass/volume] by Automated count", "g/dL", 31, 37),
    ("21000-5", "Erythrocyte distribution width [Entitic volume] by Automated count", "fL", 36, 50),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 140, 450),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 65, 180),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 6, 25),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 1.6),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 132, 147),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 95, 110),
    ("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", 20, 31),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 280),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 50, 300),
    ("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL", 60, 190),
    ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 30, 90),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 9.5),
    ("33914-3", "Glomerular filtration rate/1.73 sq M.predicted", "mL/min/{1.73_m2}", 45, 120),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 7, 60),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 8, 50),
    ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 40, 140),
    ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.1, 1.5),
    ("2885-2", "Protein [Mass/volume] in Serum or Plasma", "g/dL", 6, 8.3),
    ("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "mg/dL", 2.5, 4.5),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.4, 4.5),
    ("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", "pg/mL", 200, 900),
    ("1989-3", "Calcidiol [Mass/volume] in Serum or Plasma", "ng/mL", 15, 60),
    ("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 30, 300),
    ("5902-2", "Prothrombin time (PT)", "s", 10, 14), ("6301-6", "INR in Platelet poor plasma", "{INR}", 0.9, 1.4),
]
_SMOKING = [("266919005", "Never smoked tobacco"), ("8517006", "Ex-smoker"), ("77176002", "Smoker")]


def diverse_observations(n: int, seed: int = 5) -> list[dict]:
    """``n`` Observations of a many-sided history: labs, vitals, blood pressure panels, smoking status,
    questionnaire scores, in the shapes EHR exports carry (displays, encounters, reference ranges)."""
    rnd = random.Random(seed)
    out: list[dict] = []
    for i in range(n):
        kind = i % 20
        if kind == 0:
            obs = _lab(i, "85354-9", "Blood pressure panel with all children optional", "mm[Hg]", 0, "vital-signs")
            del obs["valueQuantity"]
            obs["component"] = [
                {"code": {"coding": [{"system": LOINC, "code": c, "display": d}], "text": d},
                 "valueQuantity": {"value": round(rnd.uniform(lo, hi)), "unit": "mm[Hg]", "system": UCUM,
                                   "code": "mm[Hg]"}}
                for c, d, lo, hi in (("8462-4", "Diastolic Blood Pressure", 60, 95),
                                     ("8480-6", "Systolic Blood Pressure", 100, 160))]
        elif kind == 1:
            code, display = _SMOKING[i % 3]
            obs = _lab(i, "72166-2", "Tobacco smoking status", "", 0, "social-history")
            del obs["valueQuantity"]
            obs["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": code, "display": display}],
                                           "text": display}
        elif kind == 2:
            obs = _lab(i, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
                       "{score}", rnd.randint(0, 27), "survey")
        else:
            code, display, unit, lo, hi = _DIVERSE[(i * 7 + kind) % len(_DIVERSE)]
            category = "vital-signs" if unit in ("/min", "Cel", "kg", "cm", "kg/m2", "%") else "laboratory"
            obs = _lab(i, code, display, unit, round(rnd.uniform(lo, hi), 2), category)
            obs["referenceRange"] = [{"low": {"value": lo, "unit": unit}, "high": {"value": hi, "unit": unit}}]
            if rnd.random() < 0.15:
                obs["interpretation"] = [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                    "code": "H", "display": "High"}]}]
        out.append(obs)
    return out


def sloppy_resources(n_obs: int) -> list[dict]:
    return _conditions() + diverse_observations(n_obs)


def synthea_resources() -> tuple[list[dict], str] | None:
    if not SAMPLES.is_dir():
        return None
    files = sorted(SAMPLES.glob("*.json"), key=lambda p: abs(p.stat().st_size - 1_100_000))
    if not files:
        return None
    bundle = json.loads(files[0].read_text())
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e], files[0].name


def hook_body(resources: list[dict], templates: dict[str, str]) -> bytes:
    return json.dumps({
        "hook": "patient-view", "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": "bench"},
        "prefetch": prefetch_from(resources, templates),
    }).encode()


_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _shifted(value: object, seconds: int) -> object:
    """``value`` with every instant ("2026-11-01T08:00:00Z", "2019-03-04T10:00:00-05:00") moved ``seconds``
    earlier, written as it was (UTC as ``Z``, an offset as that offset)."""
    if isinstance(value, dict):
        return {k: _shifted(v, seconds) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, seconds) for v in value]
    if isinstance(value, str) and _INSTANT.match(value):
        moved = datetime.fromisoformat(value.replace("Z", "+00:00")) - timedelta(seconds=seconds)
        return moved.isoformat().replace("+00:00", "Z") if value.endswith("Z") else moved.isoformat()
    return value


def _instants(value: object) -> int:
    if isinstance(value, dict):
        return sum(_instants(v) for v in value.values())
    if isinstance(value, list):
        return sum(_instants(v) for v in value)
    return int(isinstance(value, str) and bool(_INSTANT.match(value)))


# More distinct times than the service's date cache holds (cards/clinical/dates.py, 32,768), sent in turn:
# each call then parses its times as a new patient's record would make it.
DISTINCT_TIMES = 40_000


def bodies_of(resources: list[dict], templates: dict[str, str], variants: int | None = None) -> list[bytes]:
    """Hook bodies of the record sent in turn, each with its times moved by its own number of seconds,
    so that the times a call reads were not read before (by default enough bodies for DISTINCT_TIMES
    times, at least 2); ``variants=1``: the same body every time, which lets a cache of values serve
    every call after the first."""
    if variants is None:
        variants = min(400, max(2, -(-DISTINCT_TIMES // max(1, _instants(resources)))))
    return [hook_body(resources if k == 0 else _shifted(resources, k * 61), templates) for k in range(variants)]


# -- measuring --------------------------------------------------------------------------
class Target:
    def __init__(self, name: str, port: int, path: str):
        self.name, self.port, self.path = name, port, path

    def post(self, body: bytes) -> tuple[float, int]:
        """(milliseconds, status) of one POST on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        t0 = time.perf_counter()
        conn.request("POST", self.path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        ms = (time.perf_counter() - t0) * 1000
        conn.close()
        return ms, resp.status


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def paired(targets: list[Target], bodies: list[bytes], rounds: int, seconds: float, warmup: int = 6) -> dict:
    """Latencies of ``rounds`` rounds, one request to each target per round (the same body within a
    round, the next body the next round), the order rotating."""
    errors = 0
    for k in range(warmup):
        for t in targets:
            errors += t.post(bodies[k % len(bodies)])[1] != 200
    lat: dict[str, list[float]] = {t.name: [] for t in targets}
    stop_at = time.monotonic() + seconds
    for i in range(rounds):
        if i >= 5 and time.monotonic() > stop_at:
            break
        body = bodies[i % len(bodies)]
        for t in targets[i % len(targets):] + targets[:i % len(targets)]:
            ms, status = t.post(body)
            lat[t.name].append(ms)
            errors += status != 200
    return {"lat": lat, "errors": errors}


def throughput(targets: list[Target], bodies: list[bytes], clients: int, phase_seconds: float, phases: int) -> dict:
    """Requests per second of each target under ``clients`` concurrent clients, in alternating phases."""
    done = {t.name: 0 for t in targets}
    spent = {t.name: 0.0 for t in targets}
    errors = 0
    for phase in range(phases * len(targets)):
        target = targets[phase % len(targets)]
        stop_at = time.monotonic() + phase_seconds
        counts = [0] * clients
        bad = [0] * clients

        def client(k: int) -> None:
            while time.monotonic() < stop_at:
                bad[k] += target.post(bodies[(k + counts[k]) % len(bodies)])[1] != 200
                counts[k] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        spent[target.name] += time.perf_counter() - t0
        done[target.name] += sum(counts)
        errors += sum(bad)
    return {"rps": {n: done[n] / spent[n] for n in done}, "errors": errors}


QUIET_SECONDS = 1.0  # idle time before each round of the first-calls row
LATER_ROUNDS = 3  # later rounds per fresh service; their median is the first round's measure


def workers_cpu_ms(master: subprocess.Popen) -> float | None:
    """CPU milliseconds the master's worker processes have used so far (every thread; from /proc),
    or None where /proc does not say."""
    try:
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
        total = 0
        for pid in children:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e6
    except (OSError, ValueError, IndexError):
        return None


def workers_faults(master: subprocess.Popen) -> int | None:
    """Minor page faults of the master's worker processes so far (every thread; from /proc): a
    worker copies a page it shares with the master (copy-on-write) or meets a new one here."""
    try:
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
        return sum(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7]) for pid in children)
    except (OSError, ValueError, IndexError):
        return None


def quiet(master: subprocess.Popen, seconds: float = QUIET_SECONDS, limit: float = 20) -> None:
    """Wait until the workers have been idle for ``seconds`` in a row (their CPU, every thread, not
    advancing by more than their event loops' ticks), at most ``limit`` seconds.

    Both rounds of the first-calls row follow the same quiet time: on this virtual machine a call's
    CPU grows with the idle time before it (one worker, typical record: 12-20 ms after 0.4 s idle,
    25-50 ms after 3 s; ``bench/run.py`` docstring), so rounds after unequal pauses would measure
    the pauses, not the first call."""
    deadline = time.monotonic() + limit
    last = workers_cpu_ms(master)
    since = time.monotonic()
    while last is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        now = workers_cpu_ms(master)
        if now is None:
            return
        if now - last > 0.5:
            since = time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
        last = now


def first_calls(target: Target, body: bytes, workers: int) -> tuple[list[float], int]:
    """One call per worker, all at once (a sync worker holds one request at a time)."""
    out: list[float] = [0.0] * workers
    status = [200] * workers
    barrier = threading.Barrier(workers)

    def one(k: int) -> None:
        barrier.wait()
        out[k], status[k] = target.post(body)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out, sum(s != 200 for s in status)


def first_and_later(master: subprocess.Popen, service: Target, typicals: list[bytes], workers: int,
                    later_rounds: int = LATER_ROUNDS) -> dict:
    """On a fresh service: one call per worker at once (its first), then, after 3 calls per worker,
    ``later_rounds`` such rounds; each round after the same quiet time (``quiet``), each of bodies
    not sent before. Each round's latencies and the workers' CPU per call; the later rounds' median."""
    fresh = itertools.count()
    _all_workers_up(master, workers)

    def one_round() -> tuple[list[float], int, float | None, float | None]:
        body = typicals[next(fresh) % len(typicals)]
        quiet(master)
        before, faults_before = workers_cpu_ms(master), workers_faults(master)
        latencies, bad = first_calls(service, body, workers)
        time.sleep(0.5)  # the issued-card writers' work of the round too
        after, faults_after = workers_cpu_ms(master), workers_faults(master)
        return (latencies, bad, None if before is None or after is None else (after - before) / workers,
                None if faults_before is None or faults_after is None else (faults_after - faults_before) / workers)

    cold, errors, cpu_cold, faults_cold = one_round()
    for _ in range(3 * workers):
        service.post(typicals[next(fresh) % len(typicals)])
    later = [one_round() for _ in range(max(1, later_rounds))]
    errors += sum(r[1] for r in later)
    warm = sorted((r[0] for r in later), key=max)[len(later) // 2]  # the round of median slowest call
    cpus = [r[2] for r in later if r[2] is not None]
    cpu = (cpu_cold, statistics.median(cpus)) if cpu_cold is not None and cpus else None
    faults = [r[3] for r in later if r[3] is not None]
    return {"cold_ms": [round(x, 2) for x in cold], "warm_ms": [round(x, 2) for x in warm],
            "cpu_ms_per_call": [round(x, 2) for x in cpu] if cpu else None,
            "faults_per_call": [faults_cold, statistics.median(faults)] if faults_cold is not None and faults else None,
            "errors": errors}


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (n, ms) in microseconds per resource."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _block_ratios(a: list[float], b: list[float], blocks: int = 3) -> tuple[float, float]:
    """Lowest and highest ratio of p50s over consecutive blocks of the paired run (its spread)."""
    size = max(1, len(a) // blocks)
    ratios = [statistics.median(a[k:k + size]) / statistics.median(b[k:k + size])
              for k in range(0, size * blocks, size) if a[k:k + size] and b[k:k + size]]
    return min(ratios), max(ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150, help="paired rounds per record (default 150)")
    parser.add_argument("--seconds", type=float, default=12, help="time cap per record (default 12)")
    parser.add_argument("--workers", type=int, help="worker processes of both servers (default: the service's)")
    parser.add_argument("--sweep", default="100,300,1000,3000,10000,30000",
                        help="Observation counts of the size sweep (comma-separated; empty: none)")
    parser.add_argument("--variants", type=int,
                        help="bodies per record, each with its own times, sent in turn (default: enough for "
                             f"{DISTINCT_TIMES:,} distinct times; 1: the same body every time, which lets a cache "
                             "of values serve every call after the first)")
    parser.add_argument("--starts", type=int, default=5,
                        help="fresh service starts whose first calls are measured (default 5; the median is shown)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    workers, worker_class, threads = _gunicorn_settings()
    workers = args.workers or workers
    workdir = REPO / "instance" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    svc_port, floor_port = _free_port(), _free_port()
    procs: list[subprocess.Popen] = []
    rows: list[dict] = []
    errors = 0
    try:
        procs.append(start_service(svc_port, workdir, workers))
        conn = http.client.HTTPConnection("127.0.0.1", svc_port, timeout=10)
        conn.request("GET", "/cds-services")
        services = json.loads(conn.getresponse().read())["services"]
        templates = next(s for s in services if s["hook"] == "patient-view")["prefetch"]
        service = Target("service", svc_port, SERVICE)
        typicals = bodies_of(typical_resources(110_000), templates, max(2, args.variants or 0) or None)
        typical = typicals[0]
        # the first calls of fresh services: ``--starts`` of them, the last being the one measured below
        starts = []
        for _ in range(max(1, args.starts) - 1):
            port = _free_port()
            extra = start_service(port, workdir, workers)
            try:
                starts.append(first_and_later(extra, Target("service", port, SERVICE), typicals, workers))
            finally:
                os.killpg(extra.pid, signal.SIGTERM)
                extra.wait(timeout=30)
        starts.append(first_and_later(procs[0], service, typicals, workers))
        errors += sum(st["errors"] for st in starts)
        procs.append(start_floor(floor_port, workers, worker_class, threads))
        bare, own = Target("bare", floor_port, "/parse"), Target("own", svc_port, "/_bench/parse")
        ratios = [max(st["cold_ms"]) / max(st["warm_ms"]) for st in starts]
        cpus = [st["cpu_ms_per_call"] for st in starts if st["cpu_ms_per_call"] and st["cpu_ms_per_call"][1] > 0]
        cpu_ratios = [first / later for first, later in cpus]
        rows.append({"record": "first calls (one per worker, at once)", "bytes": len(typical), "clients": workers,
                     "resources": None, "starts": starts,
                     "cold_ms": [statistics.median(max(st["cold_ms"]) for st in starts)],
                     "warm_ms": [statistics.median(max(st["warm_ms"]) for st in starts)],
                     "ratio": statistics.median(ratios), "spread": (min(ratios), max(ratios)),
                     "cpu_ms_per_call": [statistics.median(c[0] for c in cpus),
                                         statistics.median(c[1] for c in cpus)] if cpus else None,
                     "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else None,
                     "cpu_spread": (min(cpu_ratios), max(cpu_ratios)) if cpu_ratios else None,
                     "faults_per_call": [statistics.median(st["faults_per_call"][k] for st in starts
                                                           if st["faults_per_call"]) for k in (0, 1)]
                     if any(st["faults_per_call"] for st in starts) else None})

        records: list[tuple[str, list[dict], float]] = [
            ("typical", typical_resources(110_000), 1.0), ("large", large_resources(3000), 1.0),
            ("sloppy", sloppy_resources(2750), 1.0)]
        synthea = synthea_resources()
        if synthea:
            records.append((f"synthea ({synthea[1][:24]})", synthea[0], 0.6))
        for name, resources, share in records:
            bodies = bodies_of(resources, templates, args.variants)
            body = bodies[0]
            run = paired([bare, own, service], bodies, int(args.rounds * share), args.seconds * share)
            errors += run["errors"]
            lat = run["lat"]
            lo, hi = _block_ratios(lat["service"], lat["bare"])
            rows.append({"record": name, "bytes": len(body), "clients": 1, "resources": len(resources),
                         "n": len(lat["service"]),
                         **{f"{t}_p50": statistics.median(v) for t, v in lat.items()},
                         "service_p95": _p(lat["service"], 0.95),
                         "ratio": statistics.median(lat["service"]) / statistics.median(lat["bare"]),
                         "ratio_own": statistics.median(lat["service"]) / statistics.median(lat["own"]),
                         "spread": (lo, hi)})
        tp = throughput([bare, service, own], typicals[:args.variants or len(typicals)], 8, phase_seconds=1.5,
                        phases=3)
        errors += tp["errors"]
        rows.append({"record": "typical, 8 clients (req/s)", "bytes": len(typical), "clients": 8, "resources": None,
                     "bare_rps": tp["rps"]["bare"], "own_rps": tp["rps"]["own"], "service_rps": tp["rps"]["service"],
                     "ratio": tp["rps"]["service"] / tp["rps"]["bare"],
                     "ratio_own": tp["rps"]["service"] / tp["rps"]["own"]})

        sweep = [int(n) for n in args.sweep.split(",") if n.strip()]
        points: dict[str, list[tuple[int, float]]] = {"bare": [], "own": [], "service": []}
        for n in sweep:
            bodies = bodies_of(sloppy_resources(n), templates, args.variants)
            body = bodies[0]
            budget = min(args.seconds, 4.0)
            run = paired([bare, own, service], bodies, 40, budget, warmup=2)
            errors += run["errors"]
            lat = run["lat"]
            for t, v in lat.items():
                points[t].append((n + 2, statistics.median(v)))
            rows.append({"record": f"sweep {n:,} Observations", "bytes": len(body), "clients": 1, "resources": n + 2,
                         "n": len(lat["service"]), **{f"{t}_p50": statistics.median(v) for t, v in lat.items()},
                         "service_p95": _p(lat["service"], 0.95),
                         "ratio": statistics.median(lat["service"]) / statistics.median(lat["bare"]),
                         "ratio_own": statistics.median(lat["service"]) / statistics.median(lat["own"])})
        if len(sweep) >= 2:
            slopes = {t: _slope(p) for t, p in points.items()}
            rows.append({"record": "sweep slope (µs per resource)", "bytes": None, "clients": 1, "resources": None,
                         **{f"{t}_p50": s / 1000 for t, s in slopes.items()},
                         "ratio": slopes["service"] / slopes["bare"], "ratio_own": slopes["service"] / slopes["own"],
                         "slope": True})
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)

    print(f"\n{os.cpu_count()} cores, {workers} workers x {threads} threads per server (service: {worker_class}); "
          "ratios are service / bare floor "
          "(latency p50, or req/s) and service / the project's own floor route, measured in the same run; the "
          "spread is the lowest and highest ratio over three consecutive blocks of the paired run.\n")
    print("| record | body | resources | bare floor p50 ms | own floor p50 ms | service p50 / p95 ms "
          "| service / bare (spread) | service / own | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        size = f"{r['bytes'] / 1024:,.0f} KB" if r.get("bytes") else ""
        count = f"{r['resources']:,}" if r.get("resources") else ""
        if "cold_ms" in r:
            starts = len(r["starts"])
            print(f"| {r['record']}, median of {starts} starts | {size} | | | | first: max {r['cold_ms'][0]:.1f}, "
                  f"later round: max {r['warm_ms'][0]:.1f} | {r['ratio']:.2f}x ({r['spread'][0]:.2f}–"
                  f"{r['spread'][1]:.2f}, first / later) | | ≈1x |")
            if r.get("cpu_ratio"):
                first, later = r["cpu_ms_per_call"]
                lo, hi = r["cpu_spread"]
                print(f"| first calls, workers' CPU per call (all threads, /proc), median of {starts} starts | {size} "
                      f"| | | | first: {first:.1f} ms, later round: {later:.1f} ms | {r['cpu_ratio']:.2f}x ({lo:.2f}–"
                      f"{hi:.2f}, first / later) | | ≈1x |")
            if r.get("faults_per_call"):
                first, later = r["faults_per_call"]
                print(f"| first calls, workers' page faults per call (/proc), median of {starts} starts | {size} "
                      f"| | | | first: {first:.0f}, later round: {later:.0f} | | | |")
            continue
        if "bare_rps" in r:
            print(f"| {r['record']} | {size} | | {r['bare_rps']:.0f} req/s | {r['own_rps']:.0f} req/s "
                  f"| {r['service_rps']:.0f} req/s | {r['ratio']:.2f}x | {r['ratio_own']:.2f}x "
                  f"| ≥ {THROUGHPUT_TARGET}x |")
            continue
        if r.get("slope"):
            print(f"| {r['record']} | | | {r['bare_p50'] * 1000:.1f} µs | {r['own_p50'] * 1000:.1f} µs "
                  f"| {r['service_p50'] * 1000:.1f} µs | {r['ratio']:.2f}x | {r['ratio_own']:.2f}x | |")
            continue
        spread = f" ({r['spread'][0]:.2f}–{r['spread'][1]:.2f})" if "spread" in r else ""
        target = TARGETS.get(r["record"])
        print(f"| {r['record']} | {size} | {count} | {r['bare_p50']:.2f} | {r['own_p50']:.2f} "
              f"| {r['service_p50']:.2f} / {r['service_p95']:.2f} | {r['ratio']:.2f}x{spread} "
              f"| {r['ratio_own']:.2f}x | {f'≤ {target}x' if target else ''} |")
    if errors:
        print(f"\n{errors} requests did not answer 200")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
