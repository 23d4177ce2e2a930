"""Drip: a hostile FHIR server on loopback that answers one byte at a time, for as long as the
client keeps reading, and records when each connection opened and when the client let go.

``serve_drip(mode)`` yields a ``Drip`` whose ``url`` is its base; ``mode`` is ``"body"`` (the
status line and headers at once, then a body of one space every ``interval`` seconds) or
``"headers"`` (the status line, then header bytes one at a time, never the blank line).
A request whose line contains ``_fail`` is answered 500 after 0.2 s instead. Each connection is
served for at most ``limit`` seconds.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["Drip", "serve_drip"]


@dataclass
class Connection:
    opened: float
    closed_by_client: float | None = None
    request_line: str = ""


@dataclass
class Drip:
    url: str
    mode: str
    interval: float
    connections: list[Connection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open_count(self) -> int:
        with self.lock:
            return sum(1 for c in self.connections if c.closed_by_client is None)

    def snapshot(self) -> list[Connection]:
        with self.lock:
            return list(self.connections)


def _serve(drip: Drip, conn: socket.socket, limit: float, stop: threading.Event) -> None:
    record = Connection(time.monotonic())
    with drip.lock:
        drip.connections.append(record)
    try:
        conn.settimeout(limit)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                record.closed_by_client = time.monotonic()
                return
            data += chunk
        record.request_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        if "_fail" in record.request_line:
            time.sleep(0.2)
            conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            record.closed_by_client = time.monotonic()
            return
        if drip.mode == "body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 1000000\r\n\r\n{")
            byte = b" "
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            byte = b"X"
        ends = time.monotonic() + limit
        while time.monotonic() < ends and not stop.is_set():
            readable, _, _ = select.select([conn], [], [], drip.interval)
            if readable:
                try:
                    if not conn.recv(4096):
                        record.closed_by_client = time.monotonic()
                        return
                except OSError:
                    record.closed_by_client = time.monotonic()
                    return
            try:
                conn.sendall(byte)
            except OSError:
                record.closed_by_client = time.monotonic()
                return
    except OSError:
        if record.closed_by_client is None:
            record.closed_by_client = time.monotonic()
    finally:
        conn.close()


@contextmanager
def serve_drip(mode: str = "body", interval: float = 0.02, limit: float = 30.0) -> Iterator[Drip]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    listener.settimeout(0.1)
    drip = Drip(f"http://127.0.0.1:{listener.getsockname()[1]}", mode, interval)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=_serve, args=(drip, conn, limit, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield drip
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
