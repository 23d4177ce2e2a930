"""Migrate: bring a database's schema to the newest revision with Alembic, one process at a time.

The service runs ``upgrade`` at start-up (``CDSHOOKS_DB_MIGRATE=1``, the default) and
``cdshooks db upgrade`` runs it by hand. Several workers booting together queue behind one
lock: a PostgreSQL transaction-level advisory lock, or an exclusive ``flock`` on a file
beside an SQLite database; the first one migrates, the others find the schema at head.
A database created before migrations existed (same tables, no ``alembic_version``) is
stamped at the first revision, then upgraded.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

__all__ = ["upgrade", "current", "head", "MIGRATIONS"]

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_PG_LOCK_KEY = 7_305_982_311  # any constant shared by every process of this service


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    """The newest revision shipped with this version of the service."""
    return str(ScriptDirectory.from_config(_config()).get_current_head())


def current(engine: Engine) -> str | None:
    """The database's revision (None for an empty or pre-migration database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock = Path(database).with_name(Path(database).name + ".migrate-lock")
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema to ``revision``; returns the (before, after) revisions."""
    with _file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        cfg = _config()
        cfg.attributes["connection"] = conn
        if before is None and inspect(conn).has_table("issued_card"):
            command.stamp(cfg, "0001")
        command.upgrade(cfg, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after
