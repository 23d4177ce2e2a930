"""Benchmark: silent mode over synthesized populations (local runner, and Spark local mode).

Populations are synthesized by templating patients with new ids, written as Bulk Data NDJSON
(one file per resource type, as an EHR's ``$export`` gives them):

* **small** patients: the fixture patients of ``fhir_fixtures/`` (a few resources each);
* **Synthea-sized** patients: the 19 Synthea patients of ``../shared/fhir_samples`` (every
  resource type Synthea writes, 228 resources and ~0.75 MB per patient on average; the
  runner keeps the ~150 of the types the rules read).

Measured, each by running ``cdshooks simulate`` as a separate process tree:

1. **memory**: peak resident memory of the whole process tree (the runner and its workers,
   summed, sampled every 50 ms) for ``--small`` and ten times as many small patients;
2. **throughput**: Synthea-sized patients per second with 1 and with 2 processes, per core;
   the **floor** is one process that only parses every NDJSON line of the same files
   (``json.loads``), so the ratio says what grouping and evaluating add to reading;
3. **Spark** (``--spark``): the same Synthea-sized population with ``--engine spark --master
   local[2]``, and the local runner on 2 processes, each at two sizes (``--synthea`` and
   ``--scale`` times that): the fixed cost (the intercept: JVM and session start, worker set-up;
   the session start alone as the runner reports it) and the **per-patient slope** of each, whose
   ratio is the per-core comparison that does not depend on the population's size.

Figures are printed (and written with ``--json``); sizes are small by default because the
machine is shared: raise them with ``--small`` and ``--synthea``.

    .venv/bin/python bench/population.py [--small 5000] [--synthea 400] [--spark [--scale 4]] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "fhir_samples" / "synthea_r4_bundles_smart"
NOW = "2026-03-01T09:00:00Z"


# -- synthesizing ----------------------------------------------------------------------------------

def _templates(kind: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(patient id, [(resource type, JSON text)]) per template patient."""
    sys.path.insert(0, str(REPO))
    from datetime import datetime, timezone

    from cdshooks.fhir.bundles import load_resources, patients, resolve_dates
    from cdshooks.tryit.fixtures import scenarios

    out = []
    if kind == "small":
        now = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
        seen: set[str] = set()
        for sc in scenarios():
            for pid, resources in patients(sc.bundle(now)).items():
                if pid not in seen:
                    seen.add(pid)
                    out.append((pid, [(r["resourceType"], json.dumps(r)) for r in resources]))
    else:
        for path in sorted(SYNTHEA.glob("*.json")):
            for pid, resources in patients(resolve_dates(load_resources(path), datetime.now(timezone.utc))).items():
                out.append((pid, [(r["resourceType"], json.dumps(r)) for r in resources]))
    return out


def synthesize(kind: str, count: int, folder: Path) -> int:
    """``count`` patients templated from ``kind`` with new ids, as NDJSON per type; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    templates = _templates(kind)
    files: dict[str, object] = {}
    written = 0
    try:
        for n in range(count):
            pid, resources = templates[n % len(templates)]
            new = f"pop-{n:07d}"
            for rtype, text in resources:
                f = files.get(rtype)
                if f is None:
                    f = files[rtype] = open(folder / f"{rtype}.000.ndjson", "w", encoding="utf-8")
                line = text.replace(pid, new) + "\n"
                f.write(line)  # type: ignore[attr-defined]
                written += len(line)
    finally:
        for f in files.values():
            f.close()  # type: ignore[attr-defined]
    return written


# -- measuring -------------------------------------------------------------------------------------

def _tree(root: int) -> tuple[int, dict[int, float]]:
    """Resident memory (bytes) of ``root`` and all its descendants, and each one's CPU seconds so far."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except OSError:
            continue
        pid = int(entry)
        fields = stat[stat.rindex(")") + 2:].split()
        parents[pid] = int(fields[1])
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    total = 0
    mine: dict[int, float] = {}
    for pid in rss:
        p = pid
        while p and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += rss[pid]
            mine[pid] = cpu[pid]
    return total, mine


def run(argv: list[str], label: str) -> dict:
    """Run ``cdshooks`` with ``argv``; wall time, peak memory of its process tree and its JSON report."""
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-m", "cdshooks.cli", *argv, "--json"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = 0
    seen: dict[int, float] = {}  # CPU seconds of every process of the tree, as last sampled
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            rss, cpu_now = _tree(proc.pid)
            peak = max(peak, rss)
            seen.update(cpu_now)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    done.set()
    sampler.join()
    # the processes this one waited for (exact), or the whole tree as sampled every 50 ms when more: Spark's
    # JVM and its Python workers are not waited for by the command
    cpu = max((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), sum(seen.values()))
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{label}: cdshooks exited {proc.returncode}")
    report = json.loads(out)
    result = {"label": label, "wallSeconds": round(wall, 2), "cpuSeconds": round(cpu, 2),
              "peakMB": round(peak / 1e6, 1), "patients": report["patients"], "timing": report["timing"],
              "patientsPerSecond": round(report["patients"] / wall, 1),
              "patientsPerCpuSecond": round(report["patients"] / cpu, 1) if cpu else None}
    print(f"  {label}: {result['patients']} patients in {wall:.1f} s ({result['patientsPerSecond']}/s), "
          f"CPU {cpu:.1f} s ({result['patientsPerCpuSecond']} patients per CPU-second), "
          f"peak {result['peakMB']} MB", flush=True)
    return result


def floor(folder: Path, patients: int) -> dict:
    """One process parsing every line of the files and nothing else."""
    started = time.monotonic()
    cpu = time.process_time()
    for path in sorted(folder.glob("*.ndjson")):
        with open(path, "rb") as f:
            for line in f:
                json.loads(line)
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu
    print(f"  floor (json.loads of every line, 1 process): {wall:.1f} s ({patients / wall:.1f} patients/s), "
          f"CPU {cpu:.1f} s")
    return {"wallSeconds": round(wall, 2), "cpuSeconds": round(cpu, 2), "patientsPerSecond": round(patients / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=5000, help="small patients (memory: this and 10x)")
    parser.add_argument("--synthea", type=int, default=400, help="Synthea-sized patients (throughput)")
    parser.add_argument("--spark", action="store_true", help="also run the Spark runner in local mode")
    parser.add_argument("--scale", type=int, default=4, help="Spark: the second size, as a multiple of --synthea")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    results: dict = {"cores": len(os.sched_getaffinity(0)), "loadAverage": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="cdshooks-bench-") as tmp:
        root = Path(tmp)
        if not args.skip_memory:
            print(f"memory: {args.small:,} and {10 * args.small:,} small patients, 2 processes")
            mem = []
            for count in (args.small, 10 * args.small):
                folder = root / f"small-{count}"
                synthesize("small", count, folder)
                mem.append(run(["simulate", str(folder), "--now", NOW, "--jobs", "2"], f"{count:,} small"))
                for p in folder.glob("*"):
                    p.unlink()
            results["memory"] = mem + [{"ratio": round(mem[1]["peakMB"] / mem[0]["peakMB"], 2)}]
            print(f"  peak ratio {results['memory'][-1]['ratio']}x for 10x the patients")
        if args.synthea <= 0:
            print("throughput: skipped (--synthea 0)")
        elif not SYNTHEA.is_dir():
            print(f"throughput: skipped ({SYNTHEA} not present)")
        else:
            folder = root / "synthea"
            size = synthesize("synthea", args.synthea, folder)
            print(f"throughput: {args.synthea:,} Synthea-sized patients ({size / 1e6:.0f} MB of NDJSON)")
            base = floor(folder, args.synthea)
            one = run(["simulate", str(folder), "--now", NOW, "--jobs", "1"], "local, 1 process")
            two = run(["simulate", str(folder), "--now", NOW, "--jobs", "2"], "local, 2 processes")
            results["throughput"] = {"floor": base, "jobs1": one, "jobs2": two,
                                     "perCore1": one["patientsPerSecond"], "perCore2": two["patientsPerSecond"] / 2,
                                     "speedup": round(one["wallSeconds"] / two["wallSeconds"], 2),
                                     "ratioToFloor1": round(one["wallSeconds"] / base["wallSeconds"], 2),
                                     "cpuRatioToFloor1": round(one["cpuSeconds"] / base["cpuSeconds"], 2)}
            print(f"  per core: {one['patientsPerSecond']}/s (1 process), {two['patientsPerSecond'] / 2:.1f}/s "
                  f"(2 processes); speed-up 1->2: {results['throughput']['speedup']}x; "
                  f"1 process / floor: {results['throughput']['ratioToFloor1']}x")
            if args.spark:
                results["spark"] = spark_against_local(root, folder, args.synthea, args.scale, two)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _line(small: dict, large: dict, key: str = "wallSeconds") -> tuple[float, float]:
    """(fixed seconds, seconds per patient) of the line through two runs' wall (or CPU) times."""
    slope = (large[key] - small[key]) / (large["patients"] - small["patients"])
    return small[key] - slope * small["patients"], slope


def spark_against_local(root: Path, folder: Path, count: int, scale: int, local_small: dict) -> dict:
    """Spark local[2] and the local runner (2 processes) at ``count`` and ``scale x count`` patients."""
    big = root / "synthea-large"
    size = synthesize("synthea", count * scale, big)
    print(f"Spark against the local runner, both on 2 cores, {count:,} and {count * scale:,} patients "
          f"({size / 1e6:.0f} MB)")
    local_large = run(["simulate", str(big), "--now", NOW, "--jobs", "2"], "local, 2 processes")
    spark = [run(["simulate", str(f), "--now", NOW, "--engine", "spark", "--master", "local[2]"], "spark local[2]")
             for f in (folder, big)]
    local_fixed, local_slope = _line(local_small, local_large)
    spark_fixed, spark_slope = _line(*spark)
    starts = [s["timing"].get("startSeconds", 0.0) for s in spark]
    _, local_cpu = _line(local_small, local_large, "cpuSeconds")
    spark_cpu_fixed, spark_cpu = _line(*spark, "cpuSeconds")
    out = {"runs": spark, "localLarge": local_large,
           "sessionStartSeconds": round(sum(starts) / len(starts), 2),
           "sparkFixedSeconds": round(spark_fixed, 2), "sparkMsPerPatient": round(1000 * spark_slope, 2),
           "localFixedSeconds": round(local_fixed, 2), "localMsPerPatient": round(1000 * local_slope, 2),
           "slopeRatio": round(spark_slope / local_slope, 2) if local_slope > 0 else None,
           "sparkCpuMsPerPatient": round(1000 * spark_cpu, 2), "localCpuMsPerPatient": round(1000 * local_cpu, 2),
           "sparkFixedCpuSeconds": round(spark_cpu_fixed, 2),
           "cpuSlopeRatio": round(spark_cpu / local_cpu, 2) if local_cpu > 0 else None,
           "wallRatioSmall": round(spark[0]["wallSeconds"] / local_small["wallSeconds"], 2),
           "wallRatioLarge": round(spark[1]["wallSeconds"] / local_large["wallSeconds"], 2)}
    print(f"  Spark: fixed {out['sparkFixedSeconds']} s (session start {out['sessionStartSeconds']} s), "
          f"{out['sparkMsPerPatient']} ms per patient; local: fixed {out['localFixedSeconds']} s, "
          f"{out['localMsPerPatient']} ms per patient (wall, 2 cores each)")
    print(f"  CPU per patient (JVM and Python workers included): Spark {out['sparkCpuMsPerPatient']} ms, local "
          f"{out['localCpuMsPerPatient']} ms: {out['cpuSlopeRatio']}x; Spark's fixed CPU "
          f"{out['sparkFixedCpuSeconds']} s")
    print(f"  per-patient slope Spark / local: {out['slopeRatio']}x; whole wall time Spark / local: "
          f"{out['wallRatioSmall']}x at {count:,}, {out['wallRatioLarge']}x at {count * scale:,} patients")
    for p in big.glob("*"):
        p.unlink()
    return out


if __name__ == "__main__":
    main()
