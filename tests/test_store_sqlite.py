"""SQLiteStateStore specifics: durability, settings, sharing one file between stores/processes."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path

import attrs
import pytest

from statesync.errors import ConflictError, StoreError
from statesync.stores.sqlite import SQLiteStateStore
from support.stores import new_job, transition


async def test_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStateStore(path)
    job = await new_job(store)
    record = attrs.evolve(await store.get_entity("job-1", "customers"), version=2)
    await store.save(record, transition=transition(0))
    lease = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    await store.aclose()

    reopened = SQLiteStateStore(str(path))
    assert await reopened.get_job("job-1") == job
    assert await reopened.get_entity("job-1", "customers") == record
    assert await reopened.history("job-1", "customers") == [transition(0)]
    assert await reopened.acquire_lease("job-1", "customers", "worker-b", ttl=30) is None
    again = await reopened.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    assert lease is not None and again is not None and again.token > lease.token
    await reopened.aclose()


async def test_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "state.db")
    await new_job(store)
    assert store._conn is not None
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    await store.aclose()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_two_stores_on_one_file_see_and_fence_each_other(tmp_path: Path) -> None:
    first = SQLiteStateStore(tmp_path / "state.db")
    second = SQLiteStateStore(tmp_path / "state.db")
    await new_job(first)
    base = await second.get_entity("job-1", "customers")
    await first.save(attrs.evolve(base, version=2, attempts=1))
    assert (await second.get_entity("job-1", "customers")).attempts == 1
    with pytest.raises(ConflictError):
        await second.save(attrs.evolve(base, version=2, attempts=2))
    assert await first.acquire_lease("job-1", "invoices", "a", ttl=30) is not None
    assert await second.acquire_lease("job-1", "invoices", "b", ttl=30) is None
    await first.aclose()
    await second.aclose()


_WORKER = """
import asyncio, sys, time, attrs
from statesync.errors import ConflictError
from statesync.stores.sqlite import SQLiteStateStore

async def main(path: str, rounds: int, start: float) -> None:
    store = SQLiteStateStore(path)
    await asyncio.sleep(start - time.time())  # so both processes really overlap
    done = conflicts = 0
    while done < rounds:
        record = await store.get_entity("job-1", "customers")
        try:
            await store.save(attrs.evolve(record, version=record.version + 1))
        except ConflictError:
            conflicts += 1
            continue
        done += 1
    await store.aclose()
    print(conflicts)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


@pytest.mark.slow
async def test_two_processes_never_lose_an_update(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStateStore(path)
    await new_job(store)
    rounds, start = 150, time.time() + 1.0
    args = (sys.executable, "-c", _WORKER, str(path), str(rounds), str(start))
    procs = [await asyncio.create_subprocess_exec(*args, stdout=PIPE) for _ in range(2)]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    conflicts = sum(int(out) for out, _ in outputs)
    assert conflicts > 0  # they did race; the version check refused the stale writes
    assert (await store.get_entity("job-1", "customers")).version == 1 + 2 * rounds
    await store.aclose()


async def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "state.db")
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.get_job("job-1")


async def test_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path)  # a directory
    with pytest.raises(StoreError, match="sqlite"):
        await store.list_jobs()


async def test_a_file_from_before_lease_holders_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE leases (job_id TEXT NOT NULL, entity TEXT NOT NULL,"
            " owner TEXT NOT NULL, token INTEGER NOT NULL, expires_at REAL NOT NULL,"
            " PRIMARY KEY (job_id, entity)) WITHOUT ROWID"
        )
    store = SQLiteStateStore(path)
    lease = await store.acquire_lease("j", "e", "w", ttl=30, host="h", pid=7)
    seen = await store.get_lease("j", "e")
    await store.aclose()
    assert lease is not None and seen is not None and (seen.host, seen.pid) == ("h", 7)
