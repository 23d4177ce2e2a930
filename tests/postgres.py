"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, started on a free
loopback port (as the ``postgres`` user, or ``nobody``, when the tests run as root), removed at the end.

``cluster()`` returns None, with the reason in ``why_not``, when no PostgreSQL binaries are found
(``/usr/lib/postgresql/*/bin``, then PATH) or the cluster does not start; the tests then skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["Cluster", "find_binaries", "start"]

USER = "cdshooks"


def find_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runas() -> tuple[list[str], str | None]:
    """The command prefix that runs a PostgreSQL binary as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], name
        return ["su", name, "-s", "/bin/sh", "-c"], name
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


class Cluster:
    def __init__(self, bindir: Path, root: Path, port: int, prefix: list[str]):
        self.bindir, self.root, self.port, self.prefix = bindir, root, port, prefix
        self.data = root / "data"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.prefix[:1] == ["su"]:
            cmd = self.prefix + [" ".join(cmd)]
        else:
            cmd = self.prefix + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200")
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts,
                         "-w", "-t", "30", "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip() or done.stdout.strip()}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres",
                             autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Cluster:
    """initdb and start a cluster; raises RuntimeError saying why it could not."""
    bindir = find_binaries()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries (initdb) in /usr/lib/postgresql/*/bin or on PATH")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise RuntimeError("the psycopg driver is not installed (pip install -e '.[postgres]')") from None
    prefix, user = _runas()
    root = Path(tempfile.mkdtemp(prefix="cdshooks-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(bindir, root, _free_port(), prefix)
    try:
        done = cluster._run("initdb", "-D", str(cluster.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                            "--no-sync", "--locale=C")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-400:]}")
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError:
                if attempt == 2:
                    log = (root / "server.log").read_text()[-400:] if (root / "server.log").exists() else ""
                    raise RuntimeError(f"PostgreSQL did not start: {log}") from None
                cluster.port = _free_port()
                time.sleep(0.2)
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster
