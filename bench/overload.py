"""Benchmark: hook-call latency under slow-client and slow-server load, beside the same calls alone.

Starts the production server (gunicorn with ``cdshooks.gunicorn_conf``) on a free loopback port
with 1 worker process and 4 threads, a healthy FHIR server (the fixture patients) and a dripping
one (status line and headers, then one byte every 50 ms, for as long as the client reads), both
on loopback. Then, one client calling in sequence:

* ``prefetch``: patient-view with every prefetch key given (no data), alone (the floor), beside 5
  and beside 50 connections that sent their headers and half a body, then stopped;
* ``fallback``: patient-view with no prefetch, the data fetched from the healthy FHIR server,
  alone (the floor), then for at least 6 s while 2 other clients keep calling with ``fhirServer``
  set to the dripping server (those calls answer 412 within their budget).

Figures are p50/p95 latency and the ratio to the floor measured in the same run. Loops are
bounded in count and time; every server is stopped at the end.

    .venv/bin/python bench/overload.py [--requests 40] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

REPO = Path(__file__).resolve().parent.parent
SERVICE = "/cds-services/fasciculation-patient-view"
PATIENT = "demo-twitching-weakness"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Quiet(WSGIRequestHandler):
    def log_request(self, code="-", size="-") -> None:
        pass


def healthy_fhir() -> tuple[str, object]:
    """The fixture patients on a threaded loopback server (the development /fhir endpoint)."""
    from flask import Flask

    from cdshooks.tryit.fhir_endpoint import blueprint
    from cdshooks.tryit.fixtures import FIXTURES_DIR

    app = Flask("healthy-fhir")
    app.register_blueprint(blueprint([FIXTURES_DIR], "/fhir"))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def dripping_fhir(stop: threading.Event) -> str:
    """A FHIR server that answers one byte every 50 ms, for as long as the client keeps reading."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.2)

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                             b"Content-Length: 1000000\r\n\r\n{")
                ends = time.monotonic() + 30
                while not stop.is_set() and time.monotonic() < ends:
                    if select.select([conn], [], [], 0.05)[0] and not conn.recv(4096):
                        return
                    conn.sendall(b" ")
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
        listener.close()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def start_server(workdir: Path, fhir_servers: list[str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(os.environ, CDSHOOKS_HOST="127.0.0.1", CDSHOOKS_PORT=str(port), CDSHOOKS_ENV="development",
               CDSHOOKS_AUTH="off", CDSHOOKS_LOG_LEVEL="WARNING", CDSHOOKS_INSTANCE_PATH=str(workdir),
               CDSHOOKS_PUBLIC_URL=f"http://127.0.0.1:{port}", CDSHOOKS_WORKERS="1", CDSHOOKS_THREADS="4",
               CDSHOOKS_CLIENT_TIMEOUT="30", CDSHOOKS_FHIR_SERVERS=",".join(fhir_servers))
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(gunicorn), "-c", "python:cdshooks.gunicorn_conf", "cdshooks:create_app()"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited during start-up")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def hook_body(base: str, fhir_server: str | None, prefetch: bool) -> bytes:
    keys = requests.get(base + "/cds-services", timeout=5).json()["services"][0]["prefetch"]
    body: dict = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                  "context": {"userId": "Practitioner/example", "patientId": PATIENT}}
    if prefetch:
        body["prefetch"] = {key: None for key in keys}
    if fhir_server:
        body["fhirServer"] = fhir_server
    return json.dumps(body).encode()


def timed(base: str, body: bytes, n: int, min_seconds: float = 0.0, max_seconds: float = 60) -> dict:
    """``n`` calls in sequence (more while ``min_seconds`` have not passed; none past ``max_seconds``)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started_all = time.monotonic()
    with requests.Session() as session:
        while len(latencies) < n or time.monotonic() - started_all < min_seconds:
            if time.monotonic() - started_all > max_seconds:
                break
            started = time.perf_counter()
            resp = session.post(base + SERVICE, data=body, headers={"Content-Type": "application/json"}, timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
    latencies.sort()
    return {"n": len(latencies), "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(latencies[max(0, int(len(latencies) * 0.95) - 1)], 2), "statuses": statuses}


def half_sent(base: str, count: int) -> list[socket.socket]:
    port = int(base.rsplit(":", 1)[1])
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  "Content-Length: 100000\r\n\r\n".encode() + b'{"hook": "patient-view", ')
        socks.append(s)
    return socks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="calls per figure")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    stop = threading.Event()
    healthy, healthy_server = healthy_fhir()
    drip = dripping_fhir(stop)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp), [f"{healthy}/fhir", f"{drip}/fhir"])
        try:
            prefetched = hook_body(base, None, prefetch=True)
            timed(base, prefetched, 5)  # warm-up
            floor = timed(base, prefetched, args.requests)
            rows.append(("prefetch", "alone (floor)", floor, floor))
            for count in (5, 50):
                socks = half_sent(base, count)
                try:
                    rows.append(("prefetch", f"beside {count} half-sent bodies",
                                 timed(base, prefetched, args.requests), floor))
                finally:
                    for s in socks:
                        s.close()

            fallback = hook_body(base, f"{healthy}/fhir", prefetch=False)
            timed(base, fallback, 3)  # warm-up: the fixture server loads its patients
            fallback_floor = timed(base, fallback, args.requests)
            rows.append(("fallback", "alone (floor)", fallback_floor, fallback_floor))
            dripped = hook_body(base, f"{drip}/fhir", prefetch=False)
            hammering = threading.Event()
            drip_results: list[dict] = []

            def hammer() -> None:
                while not hammering.is_set():
                    drip_results.append(timed(base, dripped, 1))

            hammers = [threading.Thread(target=hammer, daemon=True) for _ in range(2)]
            for t in hammers:
                t.start()
            time.sleep(0.5)
            try:
                rows.append(("fallback", "while a dripping server is hammered (2 clients)",
                             timed(base, fallback, args.requests, min_seconds=6), fallback_floor))
            finally:
                hammering.set()
                for t in hammers:
                    t.join(timeout=10)
            drip_statuses: dict[int, int] = {}
            for r in drip_results:
                for status, count in r["statuses"].items():
                    drip_statuses[status] = drip_statuses.get(status, 0) + count
            drip_p50 = statistics.median(r["p50_ms"] for r in drip_results) if drip_results else None
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
            stop.set()
            healthy_server.shutdown()

    print("| calls | load | p50 / p95 ms | p50 ratio to floor | answers |")
    print("|---|---|---|---|---|")
    out = []
    for calls, load, figures, base_figures in rows:
        ratio = round(figures["p50_ms"] / base_figures["p50_ms"], 2)
        answers = ", ".join(f"{n}× {s}" for s, n in sorted(figures["statuses"].items()))
        print(f"| {calls} | {load} | {figures['p50_ms']} / {figures['p95_ms']} | {ratio}x | {answers} |")
        out.append({"calls": calls, "load": load, **figures, "ratio": ratio})
    print(f"\nCalls to the dripping server meanwhile: {drip_statuses}, p50 {drip_p50} ms "
          "(each ends within its 2 s budget).")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": out, "dripping": {"statuses": drip_statuses,
                                                                         "p50_ms": drip_p50}}, indent=2))


if __name__ == "__main__":
    main()
