"""Benchmark: hook-call latency and throughput over HTTP against the production server stack.

Starts gunicorn (the same command as ``make serve``; development mode, where the floor route
exists, with authentication off) on a free loopback port, then for
three records, a typical one (~100 KB of prefetch) and a large one (~1 MB), both synthetic
lab-heavy histories (4,400 results over 15 years for the large one), and, when
../shared/fhir_samples is present, a real Synthea patient,
measures with 1 and with 8 concurrent clients:

* the service: ``POST /cds-services/fasciculation-patient-view`` with that prefetch
  (unfiltered: every resource of each searched type, as a sloppy EHR would send it);
* the floor: ``POST /_bench/parse`` with the same body, a route of the same stack that only
  parses the JSON.

Figures are p50/p95 latency and requests per second, and the ratio service / floor measured
in the same run. Loops are bounded in count and time; the server is stopped at the end.

    .venv/bin/python bench/run.py [--requests 300] [--seconds 20] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO.parent / "shared" / "fhir_samples" / "synthea_r4_bundles_smart"
SERVICE = "/cds-services/fasciculation-patient-view"
FLOOR = "/_bench/parse"



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workdir: Path) -> subprocess.Popen:
    env = dict(os.environ, CDSHOOKS_HOST="127.0.0.1", CDSHOOKS_PORT=str(port), CDSHOOKS_ENV="development",
               CDSHOOKS_AUTH="off", CDSHOOKS_LOG_LEVEL="WARNING", CDSHOOKS_INSTANCE_PATH=str(workdir),
               CDSHOOKS_PUBLIC_URL=f"http://127.0.0.1:{port}")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(gunicorn), "-c", "python:cdshooks.gunicorn_conf", "cdshooks:create_app()"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited during start-up")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def _searchset(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"urn:uuid:{r.get('id', uuid.uuid4())}", "resource": r} for r in resources]}


def prefetch_from(resources: list[dict], templates: dict[str, str]) -> dict:
    """A sloppy EHR's prefetch: every resource of a template's type, unfiltered, under the
    first key of that type (a referenced Medication beside the MedicationRequests)."""
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


def synthea_resources() -> tuple[list[dict], str] | None:
    if not SAMPLES.is_dir():
        return None
    files = sorted(SAMPLES.glob("*.json"), key=lambda p: abs(p.stat().st_size - 1_100_000))
    bundle = json.loads(files[0].read_text())
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e], files[0].name


def synthetic_resources(target_bytes: int, seed: int = 7) -> list[dict]:
    """A deterministic record: twitching, weakness, labs, medications, padded with vitals to size."""
    rnd = random.Random(seed)
    out: list[dict] = [
        {"resourceType": "Condition", "id": "c-fasc", "subject": {"reference": "Patient/bench"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82470000",
                              "display": "Muscle fasciculation"}]}, "onsetDateTime": "2026-08-01"},
        {"resourceType": "Condition", "id": "c-cramp", "subject": {"reference": "Patient/bench"},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2"}]},
         "onsetDateTime": "2026-09-01"},
    ]
    size, i = len(json.dumps(out)), 0
    codes = [("6298-4", "mmol/L", 3.2, 5.2), ("2947-0", "mmol/L", 135, 145), ("49765-1", "mg/dL", 8.4, 10.4),
             ("8867-4", "/min", 55, 95), ("8480-6", "mm[Hg]", 100, 150), ("29463-7", "kg", 60, 90)]
    while size < target_bytes:
        code, unit, lo, hi = codes[i % len(codes)]
        obs = {"resourceType": "Observation", "id": f"o{i}", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                         "code": "laboratory"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
               "subject": {"reference": "Patient/bench"},
               "effectiveDateTime": f"20{10 + i % 16:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
               "valueQuantity": {"value": round(rnd.uniform(lo, hi), 2), "unit": unit,
                                 "system": "http://unitsofmeasure.org", "code": unit}}
        out.append(obs)
        size += len(json.dumps(obs))
        i += 1
    return out


def measure(url: str, body: bytes, clients: int, n_requests: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds
    per_client = max(1, n_requests // clients)

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        mine: list[float] = []
        bad = 0
        for _ in range(per_client):
            if time.monotonic() > stop_at:
                break
            t0 = time.perf_counter()
            resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
            mine.append((time.perf_counter() - t0) * 1000)
            bad += resp.status_code != 200
        with lock:
            latencies.extend(mine)
            errors += bad

    # warm-up: every worker process parses once
    warm = requests.Session()
    for _ in range(10):
        warm.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(latencies), "errors": errors,
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "rps": round(len(latencies) / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per measurement (default 400)")
    parser.add_argument("--seconds", type=float, default=20, help="time cap per measurement (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    workdir = REPO / "instance" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = start_server(port, workdir)
    base = f"http://127.0.0.1:{port}"
    try:
        services = requests.get(f"{base}/cds-services", timeout=5).json()["services"]
        templates = next(s for s in services if s["hook"] == "patient-view")["prefetch"]
        records = {"typical": synthetic_resources(100_000), "large": synthetic_resources(1_000_000, seed=11)}
        synthea = synthea_resources()
        if synthea:
            records[f"synthea ({synthea[1][:20]})"] = synthea[0]
        results = []
        for name, resources in records.items():
            body = json.dumps({
                "hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/bench", "patientId": "bench"},
                "prefetch": prefetch_from(resources, templates),
            }).encode()
            for clients in (1, 8):
                floor = measure(base + FLOOR, body, clients, args.requests, args.seconds)
                service = measure(base + SERVICE, body, clients, args.requests, args.seconds)
                results.append({"record": name, "bytes": len(body), "clients": clients, "floor": floor,
                                "service": service,
                                "p50_ratio": round(service["p50_ms"] / floor["p50_ms"], 2),
                                "rps_ratio": round(service["rps"] / floor["rps"], 2)})
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)

    print(f"server: gunicorn, {os.cpu_count()} cores; typical and large are synthetic lab-heavy records, "
          "synthea is the Synthea patient nearest 1.1 MB with every resource of the searched types\n")
    print("| record | body | clients | floor p50 / p95 ms | service p50 / p95 ms | p50 ratio | floor req/s | "
          "service req/s | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['record']} | {r['bytes'] // 1024} KB | {r['clients']} | {r['floor']['p50_ms']} / "
              f"{r['floor']['p95_ms']} | {r['service']['p50_ms']} / {r['service']['p95_ms']} | {r['p50_ratio']}x | "
              f"{r['floor']['rps']} | {r['service']['rps']} | {r['service']['errors'] + r['floor']['errors']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failed = any(r["service"]["errors"] or r["floor"]["errors"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
