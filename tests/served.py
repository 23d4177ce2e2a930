"""Served: the production server (gunicorn with ``cdshooks.gunicorn_conf``) started for a test on
a free loopback port, its stderr in a file, stopped at the end: one worker, authentication off, a
database of its own, as most HTTP-level tests want it (``gunicorn_server.gunicorn`` underneath)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .gunicorn_server import free_port, gunicorn

__all__ = ["serve_gunicorn", "free_port"]


@contextmanager
def serve_gunicorn(workdir: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """Yields (base URL, path of gunicorn's stderr). ``env`` adds or overrides CDSHOOKS_* settings."""
    defaults = {"CDSHOOKS_AUTH": "off", "CDSHOOKS_DATABASE_URL": f"sqlite:///{workdir / 'served.sqlite'}",
                "CDSHOOKS_PUBLIC_URL": "{base}", "CDSHOOKS_LOG_LEVEL": "INFO"}
    workers = int(env.pop("CDSHOOKS_WORKERS", "1"))
    with gunicorn(workdir, workers=workers, **(defaults | env)) as running:
        yield running.base, running.log
