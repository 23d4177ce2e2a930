"""Served: the production server (gunicorn with ``cdshooks.gunicorn_conf``) started for a test on
a free loopback port, its stderr in a file, stopped at the end."""

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

__all__ = ["serve_gunicorn", "free_port"]

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_gunicorn(workdir: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """Yields (base URL, path of gunicorn's stderr). ``env`` adds or overrides CDSHOOKS_* settings."""
    port = free_port()
    full = dict(os.environ, CDSHOOKS_HOST="127.0.0.1", CDSHOOKS_PORT=str(port), CDSHOOKS_ENV="test",
                CDSHOOKS_AUTH="off", CDSHOOKS_INSTANCE_PATH=str(workdir / "instance"),
                CDSHOOKS_DATABASE_URL=f"sqlite:///{workdir / 'served.sqlite'}", CDSHOOKS_WORKERS="1",
                CDSHOOKS_PUBLIC_URL=f"http://127.0.0.1:{port}", CDSHOOKS_LOG_LEVEL="INFO")
    full.update(env)
    log = workdir / "gunicorn.log"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with open(log, "w") as err:
        proc = subprocess.Popen([str(gunicorn), "-c", "python:cdshooks.gunicorn_conf", "cdshooks:create_app()"],
                                env=full, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "gunicorn did not start: " + log.read_text()[-2000:]
            time.sleep(0.1)
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
