"""The store contract's parametrised `store` fixture and the records it is fed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from statesync._models import (
    EntityRecord,
    JobSpec,
    SyncState,
    TransitionRecord,
)
from statesync.store import StateStore
from statesync.stores.memory import MemoryStateStore
from statesync.stores.sqlite import SQLiteStateStore

HISTORY_LIMIT = 5


async def _redis_store(url: str, prefix: str) -> AsyncIterator[StateStore]:
    from statesync.stores.redis import RedisStateStore

    store = RedisStateStore.from_url(url, prefix=prefix, history_limit=HISTORY_LIMIT)
    yield store
    # Tests may use SCAN to clean up; the store itself never does.
    client = store._client
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await store.aclose()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, key_prefix: str
) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore(history_limit=HISTORY_LIMIT)
    elif request.param == "sqlite":
        sqlite = SQLiteStateStore(tmp_path / "state.db", history_limit=HISTORY_LIMIT)
        yield sqlite
        await sqlite.aclose()
    else:
        async for redis_store in _redis_store(request.getfixturevalue("redis_url"), key_prefix):
            yield redis_store


def make_job(job_id: str = "job-1", entities: Sequence[str] = ("customers", "invoices")) -> JobSpec:
    return JobSpec(job_id, "stripe", tuple(entities), params={"since": "2024-01-01"}, created_at=T0)


def make_records(job: JobSpec) -> list[EntityRecord]:
    return [EntityRecord(job.job_id, name, job.mode, created_at=T0) for name in job.entities]


async def new_job(store: StateStore, job_id: str = "job-1") -> JobSpec:
    job = make_job(job_id)
    await store.create_job(job, make_records(job))
    return job


def transition(i: int, source: SyncState = SyncState.PENDING) -> TransitionRecord:
    return TransitionRecord("start", source, SyncState.FETCHING, T0 + timedelta(seconds=i), i)


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, *, within: float = 10.0
) -> T:
    """``probe()``'s first answer other than None, polled for ``within`` seconds: for waits
    on time kept by a server (a TTL), which a test cannot inject a clock into."""
    deadline = time.monotonic() + within
    while (found := await probe()) is None:
        assert time.monotonic() < deadline, f"{what} within {within} s"
        await asyncio.sleep(0.02)
    return found
