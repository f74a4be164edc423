"""The StateStore contract: one suite, run against every store implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

from statesync._models import (
    EntityRecord,
    ErrorInfo,
    FetchState,
    SyncMode,
    SyncState,
    TransitionRecord,
)
from statesync.errors import ConflictError, LeaseError, UnknownJobError
from statesync.store import StateStore
from support.stores import (
    HISTORY_LIMIT,
    T0,
    eventually,
    make_records,
    new_job,
    store,  # noqa: F401 - fixtures
    transition,
)


async def test_implements_the_protocol(store: StateStore) -> None:
    assert isinstance(store, StateStore)


async def test_create_and_get_job_and_entities(store: StateStore) -> None:
    job = await new_job(store)
    assert await store.get_job("job-1") == job
    entities = await store.list_entities("job-1")
    assert [e.entity for e in entities] == ["customers", "invoices"]
    assert all(e.version == 1 for e in entities)
    record = await store.get_entity("job-1", "invoices")
    assert record == attrs.evolve(make_records(job)[1], version=1)


async def test_duplicate_create_conflicts(store: StateStore) -> None:
    job = await new_job(store)
    with pytest.raises(ConflictError):
        await store.create_job(job, make_records(job))


async def test_unknown_job_and_entity(store: StateStore) -> None:
    await new_job(store)
    with pytest.raises(UnknownJobError):
        await store.get_job("nope")
    with pytest.raises(UnknownJobError):
        await store.list_entities("nope")
    with pytest.raises(UnknownJobError):
        await store.get_entity("nope", "customers")
    with pytest.raises(UnknownJobError):
        await store.get_entity("job-1", "nope")
    with pytest.raises(UnknownJobError):
        await store.save(EntityRecord("job-1", "nope", SyncMode.FULL, version=2))
    with pytest.raises(UnknownJobError):
        await store.finish_job("nope")


async def test_save_with_the_next_version(store: StateStore) -> None:
    await new_job(store)
    current = await store.get_entity("job-1", "customers")
    updated = attrs.evolve(current, version=2, state=SyncState.FETCHING, attempts=1)
    await store.save(updated, transition=transition(0))
    assert await store.get_entity("job-1", "customers") == updated
    assert await store.history("job-1", "customers") == [transition(0)]


async def test_stale_version_conflicts_and_changes_nothing(store: StateStore) -> None:
    await new_job(store)
    current = await store.get_entity("job-1", "customers")
    await store.save(attrs.evolve(current, version=2))
    stale = attrs.evolve(current, version=2, state=SyncState.FAILED)
    with pytest.raises(ConflictError) as info:
        await store.save(stale, transition=transition(1))
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert await store.get_entity("job-1", "customers") == attrs.evolve(current, version=2)
    assert await store.history("job-1", "customers") == []


async def test_concurrent_savers_exactly_one_wins(store: StateStore) -> None:
    await new_job(store)
    base = await store.get_entity("job-1", "customers")
    candidates = [attrs.evolve(base, version=2, attempts=i) for i in range(20)]
    results = await asyncio.gather(
        *(store.save(c, transition=transition(i)) for i, c in enumerate(candidates)),
        return_exceptions=True,
    )
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert all(isinstance(r, ConflictError) for r in results if r is not None)
    assert await store.get_entity("job-1", "customers") == candidates[winners[0]]
    assert await store.history("job-1", "customers") == [transition(winners[0])]


async def test_history_is_oldest_first_and_capped(store: StateStore) -> None:
    await new_job(store)
    record = await store.get_entity("job-1", "customers")
    for i in range(HISTORY_LIMIT + 3):
        record = attrs.evolve(record, version=record.version + 1, chunk_index=i)
        await store.save(record, transition=transition(i))
    history = await store.history("job-1", "customers")
    assert [t.chunk_index for t in history] == list(range(3, HISTORY_LIMIT + 3))
    assert await store.history("job-1", "invoices") == []


async def test_lease_excludes_other_owners(store: StateStore) -> None:
    await new_job(store)
    lease = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    assert lease is not None and lease.owner == "worker-a"
    assert await store.acquire_lease("job-1", "customers", "worker-b", ttl=30) is None
    again = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    assert again is not None and again.token > lease.token
    other = await store.acquire_lease("job-1", "invoices", "worker-b", ttl=30)
    assert other is not None


async def test_save_under_a_lease(store: StateStore) -> None:
    await new_job(store)
    record = await store.get_entity("job-1", "customers")
    old = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    new = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    assert old is not None and new is not None
    with pytest.raises(LeaseError):
        await store.save(attrs.evolve(record, version=2), lease=old)
    await store.save(attrs.evolve(record, version=2), lease=new)
    assert (await store.get_entity("job-1", "customers")).version == 2


async def test_expired_lease_passes_to_another_owner(store: StateStore) -> None:
    await new_job(store)
    record = await store.get_entity("job-1", "customers")
    lease_a = await store.acquire_lease("job-1", "customers", "worker-a", ttl=0.2)
    assert lease_a is not None
    lease_b = await eventually(
        lambda: store.acquire_lease("job-1", "customers", "worker-b", ttl=30),
        "the expired lease passed to another owner",
    )
    assert lease_b.token > lease_a.token
    with pytest.raises(LeaseError):
        await store.save(attrs.evolve(record, version=2), lease=lease_a)
    with pytest.raises(LeaseError):
        await store.renew_lease(lease_a, ttl=30)
    assert await store.get_entity("job-1", "customers") == record
    await store.save(attrs.evolve(record, version=2), lease=lease_b)


async def test_renew_keeps_the_lease_alive(store: StateStore) -> None:
    await new_job(store)
    lease = await store.acquire_lease("job-1", "customers", "worker-a", ttl=0.3)
    assert lease is not None
    renewed = await store.renew_lease(lease, ttl=30)
    assert renewed.token == lease.token and renewed.expires_at > lease.expires_at
    await asyncio.sleep(0.5)
    assert await store.acquire_lease("job-1", "customers", "worker-b", ttl=30) is None
    record = await store.get_entity("job-1", "customers")
    await store.save(attrs.evolve(record, version=2), lease=renewed)


async def test_release_frees_the_entity(store: StateStore) -> None:
    await new_job(store)
    lease = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    assert lease is not None
    await store.release_lease(lease)
    with pytest.raises(LeaseError):
        await store.renew_lease(lease, ttl=30)
    taken = await store.acquire_lease("job-1", "customers", "worker-b", ttl=30)
    assert taken is not None and taken.token > lease.token
    await store.release_lease(lease)  # a stale release must not free b's lease
    assert await store.acquire_lease("job-1", "customers", "worker-c", ttl=30) is None


async def test_list_jobs_newest_first(store: StateStore) -> None:
    for i in range(4):
        await new_job(store, f"job-{i}")
    assert [j.job_id for j in await store.list_jobs()] == ["job-3", "job-2", "job-1", "job-0"]
    assert [j.job_id for j in await store.list_jobs(limit=2)] == ["job-3", "job-2"]


async def test_finished_job_stays_readable(store: StateStore) -> None:
    job = await new_job(store)
    await store.finish_job("job-1")
    assert await store.get_job("job-1") == job
    assert len(await store.list_entities("job-1")) == 2


async def test_every_record_field_round_trips(store: StateStore) -> None:
    await new_job(store)
    plus2 = timezone(timedelta(hours=2))
    record = EntityRecord(
        job_id="job-1",
        entity="customers",
        mode=SyncMode.INCREMENTAL,
        state=SyncState.FAILED,
        fetch_state=FetchState(
            offset=200,
            cursor="cus_123",
            total_processed=200,
            has_more=False,
            iterations_in_chunk=3,
            metadata={"window": {"from": "2024-01-01", "to": None}, "ids": [1, 2.5, "x"]},
        ),
        version=2,
        chunk_index=4,
        attempts=2,
        api_calls=17,
        since=datetime(2024, 1, 1, tzinfo=UTC),
        watermark=datetime(2024, 4, 30, 23, 59, 59, 123456, tzinfo=plus2),
        total_hint=1000,
        last_error=ErrorInfo("rate_limited", "slow down", T0, retry_after=1.5),
        created_at=T0,
        updated_at=T0 + timedelta(minutes=5),
        state_since=T0 + timedelta(minutes=4),
    )
    error = ErrorInfo("transient", "HTTP 503", T0)
    step = TransitionRecord("fail", SyncState.FETCHING, SyncState.FAILED, T0, 4, error=error)
    await store.save(record, transition=step)
    loaded = await store.get_entity("job-1", "customers")
    assert loaded == record
    assert loaded.watermark is not None and loaded.watermark.utcoffset() == timedelta(hours=2)
    assert await store.history("job-1", "customers") == [step]


async def test_get_lease_shows_the_holder(store: StateStore) -> None:
    await new_job(store)
    assert await store.get_lease("job-1", "customers") is None
    lease = await store.acquire_lease(
        "job-1", "customers", "worker-a", ttl=30, host="box-1", pid=4242
    )
    assert lease is not None and (lease.host, lease.pid) == ("box-1", 4242)
    seen = await store.get_lease("job-1", "customers")
    assert seen is not None
    assert (seen.owner, seen.token, seen.host, seen.pid) == ("worker-a", lease.token, "box-1", 4242)
    assert abs(seen.expires_at - lease.expires_at) < 2
    renewed = await store.renew_lease(lease, ttl=60)
    again = await store.get_lease("job-1", "customers")
    assert again is not None and again.pid == 4242 and again.expires_at > seen.expires_at + 20
    await store.release_lease(renewed)
    assert await store.get_lease("job-1", "customers") is None


async def test_get_lease_without_holder_info_and_after_expiry(store: StateStore) -> None:
    await new_job(store)
    lease = await store.acquire_lease("job-1", "invoices", "worker-a", ttl=0.2)
    assert lease is not None
    seen = await store.get_lease("job-1", "invoices")
    assert seen is not None and (seen.host, seen.pid) == (None, None)
    await eventually(
        lambda: _gone(store.get_lease("job-1", "invoices")), "the expired lease disappeared"
    )


async def test_a_dead_holders_lease_is_broken_by_its_token(store: StateStore) -> None:
    # What a successor does when it knows the holder's process is gone: release the lease
    # it read (only that token), then acquire; the new token is higher, so the dead
    # holder's writes would be refused.
    await new_job(store)
    record = await store.get_entity("job-1", "customers")
    dead = await store.acquire_lease("job-1", "customers", "a", ttl=30, host="h", pid=1)
    assert dead is not None
    seen = await store.get_lease("job-1", "customers")
    assert seen is not None
    await store.release_lease(seen)
    successor = await store.acquire_lease("job-1", "customers", "b", ttl=30, host="h", pid=2)
    assert successor is not None and successor.token > dead.token
    await store.release_lease(seen)  # a second, late breaker changes nothing
    current = await store.get_lease("job-1", "customers")
    assert current is not None and current.token == successor.token
    with pytest.raises(LeaseError):
        await store.save(attrs.evolve(record, version=2), lease=dead)
    await store.save(attrs.evolve(record, version=2), lease=successor)


async def test_min_token_lifts_a_fence_counter_left_behind(store: StateStore) -> None:
    # A store restored from an old snapshot counts tokens from an old value; the
    # destination has seen higher ones and would refuse every write.
    await new_job(store)
    first = await store.acquire_lease("job-1", "customers", "a", ttl=30)
    assert first is not None and first.token == 1
    lifted = await store.acquire_lease("job-1", "customers", "a", ttl=30, min_token=10)
    assert lifted is not None and lifted.token == 10
    after = await store.acquire_lease("job-1", "customers", "a", ttl=30, min_token=3)
    assert after is not None and after.token == 11  # never backwards
    fresh = await store.acquire_lease("job-1", "invoices", "a", ttl=30, min_token=5)
    assert fresh is not None and fresh.token == 5


async def _gone(lookup: Awaitable[object | None]) -> bool | None:
    """True once ``lookup`` finds nothing (what :func:`eventually` waits for)."""
    return True if await lookup is None else None
