"""Run the service under gunicorn (the real worker processes, as ``make serve`` does) on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from .conftest import REPO

__all__ = ["gunicorn", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    def __init__(self, proc: subprocess.Popen, base: str, log: Path):
        self.proc, self.base, self.log = proc, base, log

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a clean shutdown) and wait; returns gunicorn's exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@contextmanager
def gunicorn(tmp_path: Path, workers: int = 2, **env: str) -> Iterator[Running]:
    """Start ``gunicorn -c python:cdshooks.gunicorn_conf 'cdshooks:create_app()'``; yields once every
    worker is up (``/healthz`` answers and the master has ``workers`` children). ``{base}`` in a value of
    ``env`` becomes the server's base URL."""
    port = free_port()
    env = {k: v.replace("{base}", f"http://127.0.0.1:{port}") for k, v in env.items()}
    inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    full = dict(inherited, CDSHOOKS_PORT=str(port), CDSHOOKS_HOST="127.0.0.1", CDSHOOKS_WORKERS=str(workers),
                CDSHOOKS_ENV="test", CDSHOOKS_INSTANCE_PATH=str(tmp_path / "instance"),
                CDSHOOKS_LOG_LEVEL="WARNING") | env
    log = tmp_path / "gunicorn.log"
    binary = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(binary), "-c", "python:cdshooks.gunicorn_conf", "cdshooks:create_app()"],
                            env=full, cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            start_new_session=True)
    running = Running(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(running.base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, \
                "gunicorn did not start: " + log.read_text()[-2000:]
            time.sleep(0.1)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if children.exists():  # the other workers may still be booting when the first answers
            while len(children.read_text().split()) < workers and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(children.read_text().split()) == workers, f"{workers} worker processes serve the calls"
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
