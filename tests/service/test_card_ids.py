"""Card and suggestion uuids: random version-4 UUIDs, never the same twice, not even across a fork.

They are cut from random bytes read 4 KiB at a time (``engine._uuids``), so a preloaded master that
answered warm-up calls holds unread bytes when it forks its workers: each child must read its own.
"""

from __future__ import annotations

import os
import uuid

from cdshooks.service import engine


def test_uuids_are_version_4_and_distinct():
    ids = [u for _ in range(300) for u in engine._uuids(5)]  # past the 4 KiB read several times
    assert len(set(ids)) == len(ids) == 1500
    assert all(uuid.UUID(u).version == 4 and str(uuid.UUID(u)) == u for u in ids)


def test_a_forked_worker_never_repeats_its_masters_uuids():
    list(engine._uuids(3))  # the master has bytes left over
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the uuids it would give its first answer
        try:
            os.write(write, ",".join(engine._uuids(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read().split(",")
    parent = list(engine._uuids(4))
    assert len(child) == 4 and not set(child) & set(parent)
