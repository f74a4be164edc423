"""A frozen process holding a SQLite write lock: the successor's waits end with its lease,
in a typed, retryable error naming the holder, never after a fixed 30 s."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from statesync._lease import LeaseKeeper
from statesync._models import Record, SyncMode
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import (
    DatabaseLockedError,
    DestinationError,
    DestinationLockedError,
    StoreError,
    StoreLockedError,
)
from statesync.stores.memory import MemoryStateStore
from statesync.stores.sqlite import BUSY_TIMEOUT, SQLiteStateStore
from support.stores import new_job

# Slow: subprocess crashes and resumes (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

# Takes the write lock and freezes, as a stopped or hung worker would.
FROZEN = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def freeze() -> Iterator[list[subprocess.Popen[str]]]:
    holders: list[subprocess.Popen[str]] = []
    yield holders
    for proc in holders:
        proc.kill()
        proc.wait(10)


def hold_lock(db: Path, holders: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", FROZEN, str(db)], stdout=subprocess.PIPE, text=True
    )
    holders.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


async def test_a_store_write_under_a_lease_waits_only_as_long_as_the_lease(
    tmp_path: Path, freeze: list[subprocess.Popen[str]]
) -> None:
    db = tmp_path / "state.db"
    store = SQLiteStateStore(db)
    await new_job(store)
    lease = await store.acquire_lease("job-1", "customers", "successor", ttl=1.0)
    assert lease is not None
    record = await store.get_entity("job-1", "customers")
    frozen = hold_lock(db, freeze)
    with pytest.raises(StoreLockedError) as info:
        await store.save(attrs.evolve(record, version=2), lease=lease)
    error = info.value
    assert isinstance(error, StoreError) and isinstance(error, DatabaseLockedError)
    assert error.retryable and error.holder_pid == frozen.pid
    assert f"process {frozen.pid} (python" in str(error)
    assert error.waited <= 1.0 < BUSY_TIMEOUT  # bounded by the lease, not the fixed wait
    frozen.kill()
    frozen.wait(10)
    # The lock is free again; the lease lapsed meanwhile (it could not be renewed either).
    fresh = await store.acquire_lease("job-1", "customers", "successor", ttl=30)
    await store.save(attrs.evolve(record, version=2), lease=fresh)
    await store.aclose()


async def test_a_destination_write_under_a_lease_keeper_is_bounded_too(
    tmp_path: Path, freeze: list[subprocess.Popen[str]]
) -> None:
    db = tmp_path / "data.db"
    dest = SQLiteDestination(db)
    await dest.prepare("job-1", "customers", SyncMode.FULL)
    store = MemoryStateStore()
    lease = await store.acquire_lease("job-1", "customers", "successor", ttl=1.0)
    assert lease is not None
    keeper = LeaseKeeper(store, lease, 1.0)
    frozen = hold_lock(db, freeze)
    page = [Record(id="a", data={"id": "a"})]
    with pytest.raises(DestinationLockedError) as info:
        await dest.write_page("job-1", "customers", SyncMode.FULL, page, None, fence=lease.token)
    await keeper.release()
    error = info.value
    assert isinstance(error, DestinationError) and error.retryable
    assert error.holder_pid == frozen.pid and f"process {frozen.pid}" in str(error)
    assert error.waited <= 1.0
    frozen.kill()
    frozen.wait(10)
    await dest.write_page("job-1", "customers", SyncMode.FULL, page, None, fence=lease.token)
    await dest.aclose()
