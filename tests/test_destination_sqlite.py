"""SQLiteDestination: the shared contract, plus what only a file on disk can show."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from statesync.destination import Destination
from statesync.destinations._names import MAX_IDENTIFIER, job_key, staging_table
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import ConfigurationError, DestinationError
from support.destination_contract import (
    ENTITY,
    FULL,
    INCR,
    CheckpointContract,
    DestinationContract,
    DestinationFactory,
    at,
    full_sync,
    page,
)


class TestSQLiteDestination(DestinationContract, CheckpointContract):
    @pytest.fixture
    def make(self, tmp_path: Path) -> DestinationFactory:
        async def factory() -> Destination:
            return SQLiteDestination(tmp_path / "dest.db")

        return factory


@pytest.fixture
async def sqlite_dest(tmp_path: Path) -> AsyncIterator[SQLiteDestination]:
    dest = SQLiteDestination(tmp_path / "dest.db")
    yield dest
    await dest.aclose()


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}


async def test_data_survives_reopen(tmp_path: Path) -> None:
    first = SQLiteDestination(tmp_path / "d.db")
    await full_sync(first, "job-1", [page("a", "b", hours=2)])
    await first.prepare("job-2", ENTITY, INCR)
    await first.write_page("job-2", ENTITY, INCR, page("c", hours=7), at(7))
    await first.aclose()
    second = SQLiteDestination(tmp_path / "d.db")
    assert set(second.rows(ENTITY)) == {"a", "b", "c"}
    assert await second.watermark(ENTITY) == at(2)
    # The pending mark of job-2 was kept beside its page, so it survives too.
    await second.finalize("job-2", ENTITY, INCR)
    assert await second.watermark(ENTITY) == at(7)
    await second.aclose()


async def test_pragmas(sqlite_dest: SQLiteDestination) -> None:
    with sqlite3.connect(sqlite_dest.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_live_table_columns(sqlite_dest: SQLiteDestination) -> None:
    await full_sync(sqlite_dest, "job-1", [page("a", hours=1)])
    with sqlite3.connect(sqlite_dest.path) as conn:
        cols = [row[1] for row in conn.execute(f'PRAGMA table_info("{ENTITY}")')]
        row = conn.execute(f'SELECT * FROM "{ENTITY}"').fetchone()
    assert cols == ["id", "data", "created_at", "updated_at", "synced_at"]
    assert row[0] == "a" and row[1] == '{"id":"a"}'
    assert row[3] == "2024-01-01T01:00:00.000000+00:00"


async def test_staging_table_hides_the_job_id(sqlite_dest: SQLiteDestination) -> None:
    job = "evil'); DROP TABLE x; --"
    await sqlite_dest.prepare(job, ENTITY, FULL)
    await sqlite_dest.write_page(job, ENTITY, FULL, page("a"), at(0))
    stage = f"_stg_{ENTITY}_{job_key(job)}"
    assert stage in _tables(sqlite_dest.path)
    assert all("DROP" not in name for name in _tables(sqlite_dest.path))
    await sqlite_dest.discard(job, ENTITY)
    assert stage not in _tables(sqlite_dest.path)


def test_staging_names_fit_postgres() -> None:
    long = "e" * 63
    a, b = staging_table(long, "job-a"), staging_table(long, "job-b")
    assert len(a) <= MAX_IDENTIFIER and len(b) <= MAX_IDENTIFIER and a != b
    assert staging_table("short", "j") == f"_stg_short_{job_key('j')}"


@pytest.mark.parametrize("name", ["_statesync_swaps", "_stg_x", "sqlite_master", "SQLITE_x"])
async def test_reserved_names_are_refused(sqlite_dest: SQLiteDestination, name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        await sqlite_dest.prepare("j", name, INCR)


async def test_readers_see_old_or_new_table_never_partial(
    sqlite_dest: SQLiteDestination,
) -> None:
    sizes = {0: 300, 1: 1200}
    ids = {k: [f"r{i}" for i in range(n)] for k, n in sizes.items()}
    await full_sync(sqlite_dest, "job-0", [page(*ids[0])])
    counts: list[int] = []
    stop = threading.Event()
    reader = threading.Thread(target=_count_loop, args=(sqlite_dest.path, counts, stop))
    reader.start()
    try:
        for round_ in range(1, 7):
            size = round_ % 2
            pages = [page(*ids[size][i : i + 100]) for i in range(0, sizes[size], 100)]
            await full_sync(sqlite_dest, f"job-{round_}", pages)
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.to_thread(reader.join)
    assert counts, "the reader never read"
    assert set(counts) <= set(sizes.values())


def _count_loop(path: Path, counts: list[int], stop: threading.Event) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        while not stop.is_set():
            (count,) = conn.execute(f'SELECT count(*) FROM "{ENTITY}"').fetchone()
            counts.append(count)
    finally:
        conn.close()


def test_unopenable_path_is_a_destination_error(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="cannot open"):
        SQLiteDestination(tmp_path / "missing-dir" / "d.db")


async def test_still_usable_after_a_failed_write(sqlite_dest: SQLiteDestination) -> None:
    with pytest.raises(DestinationError):
        await sqlite_dest.write_page("j", ENTITY, FULL, page("a"), at(1))
    await full_sync(sqlite_dest, "j", [page("b", hours=2)])
    assert set(sqlite_dest.rows(ENTITY)) == {"b"}
    assert await sqlite_dest.watermark(ENTITY) == at(2)


async def test_closed_destination_raises_destination_error(tmp_path: Path) -> None:
    dest = SQLiteDestination(tmp_path / "d.db")
    await dest.aclose()
    with pytest.raises(DestinationError):
        await dest.watermark(ENTITY)
