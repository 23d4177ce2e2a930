"""Card and suggestion uuids: time-ordered version-7 UUIDs (RFC 9562) with 74 random bits, never the
same twice, not even across a fork.

They are cut from random bytes read 4 KiB at a time (``engine._uuids``), so a preloaded master that
answered warm-up calls holds unread bytes when it forks its workers: each child must read its own.
"""

from __future__ import annotations

import os
import time
import uuid

from cdshooks.service import engine


def test_uuids_are_version_7_and_distinct():
    ids = [u for _ in range(1000) for u in engine._uuids(5)]  # past the 4 KiB read several times
    assert len(set(ids)) == len(ids) == 5000
    assert all(uuid.UUID(u).version == 7 and uuid.UUID(u).variant == uuid.RFC_4122 and str(uuid.UUID(u)) == u
               for u in ids)


def test_uuids_carry_the_time_they_were_made_and_sort_by_it():
    before = time.time_ns() // 1_000_000
    first = list(engine._uuids(3))
    time.sleep(0.003)
    later = list(engine._uuids(3))
    after = time.time_ns() // 1_000_000
    stamps = [uuid.UUID(u).int >> 80 for u in first + later]
    assert all(before <= ms <= after for ms in stamps)
    assert max(first) < min(later)  # a later millisecond sorts after: the key index grows at its end


def test_uuids_random_bits_vary_within_one_millisecond():
    ids = list(engine._uuids(200))  # made in one call: one time stamp
    assert len({uuid.UUID(u).int >> 80 for u in ids}) == 1
    low = [uuid.UUID(u).int & ((1 << 62) - 1) for u in ids]
    high = [(uuid.UUID(u).int >> 64) & 0xFFF for u in ids]
    assert len(set(low)) == 200 and len(set(high)) > 150  # 62 and 12 random bits, not a counter


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
