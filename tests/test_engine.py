"""The engine end to end on in-memory parts: machine, checkpoints, retries, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from statesync import (
    ChunkPolicy,
    PageRequest,
    RetryPolicy,
    SyncMode,
    SyncState,
    perform_sync_chunk,
)
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.errors import (
    AuthError,
    ConflictError,
    ConnectorError,
    InvalidTransitionError,
    TransientError,
)
from statesync.stores.memory import MemoryStateStore
from support.clock import ManualTime
from support.engine import BrokenFor, rows, runner


async def test_full_sync_walks_the_machine_and_lands_every_record() -> None:
    data = {"a": rows(95), "b": rows(0), "c": rows(30)}
    r = runner(MemoryConnector(data))
    result = await r.sync(["a", "b", "c"])
    assert result.ok
    dest = r.destination
    assert isinstance(dest, MemoryDestination)
    for entity, expected in data.items():
        assert set(dest.rows(entity)) == {x["id"] for x in expected}
    rec = await r.store.get_entity(result.job_id, "a")
    assert rec.state is SyncState.COMPLETE
    assert rec.chunk_index == 4  # 10 pages, 3 a chunk
    assert rec.api_calls == 10
    triggers = [t.trigger for t in await r.store.history(result.job_id, "a")]
    assert triggers == [
        "start",
        "chunk_finished",
        "next_chunk",
        "chunk_finished",
        "next_chunk",
        "chunk_finished",
        "next_chunk",
        "complete",
    ]


def failing(on_calls: set[int], error: Callable[[], ConnectorError]) -> Any:
    def hook(request: PageRequest, call: int) -> ConnectorError | None:
        return error() if call in on_calls else None

    return hook


async def test_transient_error_is_retried_and_recorded() -> None:
    conn = MemoryConnector({"a": rows(50)}, fault=failing({3}, lambda: TransientError("503")))
    r = runner(conn)
    result = await r.sync(["a"])
    assert result.ok
    history = await r.store.history(result.job_id, "a")
    retries = [t for t in history if t.trigger == "retry_chunk"]
    assert len(retries) == 1
    assert retries[0].error is not None and retries[0].error.kind == "transient"
    assert "entity 'a'" in retries[0].error.message
    rec = await r.store.get_entity(result.job_id, "a")
    assert rec.attempts == 0  # reset once the chunk landed
    assert set(r.destination.rows("a")) == {x["id"] for x in rows(50)}  # type: ignore[attr-defined]


async def test_auth_error_fails_at_once_and_other_entities_finish() -> None:
    conn = MemoryConnector(
        {"a": rows(50), "b": rows(20)},
        fault=lambda req, call: AuthError("401 bad key") if req.entity == "a" else None,
    )
    r = runner(conn)
    result = await r.sync(["a", "b"])
    states = {e.entity: e.state for e in result.entities}
    assert states == {"a": SyncState.FAILED, "b": SyncState.COMPLETE}
    rec = await r.store.get_entity(result.job_id, "a")
    assert rec.attempts == 1
    assert rec.last_error is not None and rec.last_error.kind == "auth"


async def test_exhausted_attempts_fail_after_exactly_the_policy_count() -> None:
    conn = MemoryConnector({"a": rows(50)}, fault=lambda req, call: TransientError("down"))
    r = runner(conn, retry_policy=RetryPolicy(attempts=4, initial_delay=0.001, jitter=0))
    result = await r.sync(["a"])
    assert result.entities[0].state is SyncState.FAILED
    assert conn.calls == 4


async def test_failed_entity_resumes_by_operator_trigger() -> None:
    broken = {"on": True}
    conn = MemoryConnector(
        {"a": rows(50)}, fault=lambda req, call: AuthError("key") if broken["on"] else None
    )
    r = runner(conn)
    result = await r.sync(["a"])
    assert result.entities[0].state is SyncState.FAILED
    broken["on"] = False
    again = await r.run(result.job_id, retry_failed=True)
    assert again.ok
    triggers = [t.trigger for t in await r.store.history(result.job_id, "a")]
    assert triggers[:3] == ["start", "fail", "resume"]


async def test_stop_request_interrupts_after_a_checkpoint_and_resume_is_exact() -> None:
    data = {"a": rows(200)}
    store, dest = MemoryStateStore(), MemoryDestination()
    conn = MemoryConnector(data)
    first = runner(conn, store=store, destination=dest)

    def stop_after_7(req: PageRequest, call: int) -> None:
        if call == 7:
            first.request_stop()

    conn.fault = stop_after_7
    result = await first.sync(["a"])
    assert result.interrupted
    rec = await store.get_entity(result.job_id, "a")
    assert rec.fetch_state.total_processed == 70
    assert rec.state is SyncState.FETCHING
    conn.fault = None
    second = runner(conn, store=store, destination=dest)
    assert (await second.run(result.job_id)).ok
    assert set(dest.rows("a")) == {x["id"] for x in data["a"]}
    assert conn.calls == 20


async def test_non_resumable_connector_runs_as_one_unchunked_pass() -> None:
    conn = MemoryConnector({"a": rows(95)}, resumable=False)
    r = runner(conn)
    result = await r.sync(["a"])
    assert result.ok
    rec = await r.store.get_entity(result.job_id, "a")
    assert rec.chunk_index == 1
    assert rec.api_calls == 10


async def test_a_finished_chunk_is_not_fetched_again() -> None:
    store, dest = MemoryStateStore(), MemoryDestination()
    conn = MemoryConnector({"a": rows(100)})
    r = runner(conn, store=store, destination=dest)
    job = await r.create_job(["a"])
    kw: dict[str, Any] = dict(
        job_id=job,
        entity="a",
        connector=conn,
        store=store,
        destination=dest,
        chunk_policy=ChunkPolicy(3, 10),
    )
    first = await perform_sync_chunk(expected_chunk=0, **kw)
    calls = conn.calls
    again = await perform_sync_chunk(expected_chunk=0, **kw)
    assert again.already_done and conn.calls == calls
    assert again.fetch_state == first.fetch_state
    nxt = await perform_sync_chunk(expected_chunk=1, **kw)
    assert nxt.chunk_index == 1 and not nxt.already_done


async def test_full_sync_failing_in_its_last_chunk_keeps_the_live_table() -> None:
    store, dest = MemoryStateStore(), MemoryDestination()
    good = runner(MemoryConnector({"a": rows(40, "old")}), store=store, destination=dest)
    assert (await good.sync(["a"])).ok
    before = dict(dest.rows("a"))
    conn = MemoryConnector(
        {"a": rows(40, "new")}, fault=lambda req, call: AuthError("x") if call == 4 else None
    )
    bad = runner(conn, store=store, destination=dest)
    result = await bad.sync(["a"])
    assert result.entities[0].state is SyncState.FAILED
    assert dest.rows("a") == before


async def test_incremental_sync_starts_from_the_published_watermark() -> None:
    store, dest = MemoryStateStore(), MemoryDestination()
    data = rows(30)
    first = runner(MemoryConnector({"a": data}), store=store, destination=dest)
    assert (await first.sync(["a"], mode=SyncMode.INCREMENTAL)).ok
    mark = await dest.watermark("a")
    assert mark is not None and mark.isoformat() == max(x["updated_at"] for x in data)
    conn = MemoryConnector({"a": data})
    second = runner(conn, store=store, destination=dest)
    job = await second.create_job(["a"], mode=SyncMode.INCREMENTAL)
    assert (await store.get_entity(job, "a")).since == mark
    assert (await second.run(job)).ok
    assert (await store.get_entity(job, "a")).records < 30


async def test_two_unleased_drivers_of_one_entity_conflict() -> None:
    store, dest = MemoryStateStore(), MemoryDestination()
    conn = MemoryConnector({"a": rows(100)})
    job = await runner(conn, store=store, destination=dest).create_job(["a"])
    kw: dict[str, Any] = dict(
        job_id=job,
        entity="a",
        connector=conn,
        store=store,
        destination=dest,
        chunk_policy=ChunkPolicy(3, 10),
    )
    results = await asyncio.gather(
        perform_sync_chunk(**kw), perform_sync_chunk(**kw), return_exceptions=True
    )
    assert any(isinstance(x, ConflictError) for x in results)


def test_invalid_transition_names_entity_state_and_trigger() -> None:
    from statesync import next_state

    with pytest.raises(InvalidTransitionError) as info:
        next_state("customers", SyncState.COMPLETE, "next_chunk")
    assert "customers" in str(info.value) and "complete" in str(info.value)
    assert "next_chunk" in str(info.value)


def test_sync_facade_runs_without_an_event_loop() -> None:
    r = runner(MemoryConnector({"a": rows(25)}))
    result = r.sync_blocking(["a"])
    assert result.ok and result.entities[0].records == 25


async def test_a_reused_job_id_gets_fresh_staging() -> None:
    # The old job expired from the store (or the store was rebuilt); its id comes back.
    dest = MemoryDestination()
    first = runner(MemoryConnector({"a": rows(30, "old")}), destination=dest)
    assert (await first.sync(["a"], job_id="nightly")).ok
    second = runner(MemoryConnector({"a": rows(30, "new")}), destination=dest)
    assert (await second.sync(["a"], job_id="nightly")).ok
    assert set(dest.rows("a")) == {x["id"] for x in rows(30, "new")}


async def test_watermark_never_passes_the_jobs_start() -> None:
    # Records stamped after the job started (edited while it runs, say) must not push the
    # mark past edits that an unordered source handed out earlier.
    from datetime import UTC, datetime, timedelta

    from statesync._models import WATERMARK_MARGIN

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    data = [{"id": f"r{i}", "updated_at": future} for i in range(5)]
    dest = MemoryDestination()
    r = runner(MemoryConnector({"a": data}), destination=dest)
    result = await r.sync(["a"], mode=SyncMode.INCREMENTAL)
    rec = await r.store.get_entity(result.job_id, "a")
    mark = await dest.watermark("a")
    assert rec.created_at is not None and mark is not None
    assert mark == rec.created_at - WATERMARK_MARGIN


async def test_a_destination_error_stops_every_entity_before_it_surfaces() -> None:
    from statesync.errors import DestinationError

    conn = MemoryConnector({"a": rows(50), "b": rows(2000)})
    store = MemoryStateStore()
    r = runner(conn, store=store, destination=BrokenFor("a"))
    with pytest.raises(DestinationError):
        await r.sync(["a", "b"])
    calls = conn.calls
    await asyncio.sleep(0.05)
    assert conn.calls == calls, "an entity kept running after the job raised"
    job = (await store.list_jobs())[0].job_id
    # Their leases were released: another runner can take over at once.
    assert await store.acquire_lease(job, "b", "someone-else", 5) is not None


class FlakyRenewals(MemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 2
        self.renewed = 0

    async def renew_lease(self, lease: Any, ttl: float) -> Any:
        if self.failures:
            from statesync.errors import StoreError

            self.failures -= 1
            raise StoreError("redis: ConnectionError")
        self.renewed += 1
        return await super().renew_lease(lease, ttl)


async def test_lease_renewal_rides_out_store_hiccups() -> None:
    from statesync._lease import LeaseKeeper

    store = FlakyRenewals()
    lease = await store.acquire_lease("j", "a", "me", 3.0)
    assert lease is not None
    clock = ManualTime()
    keeper = LeaseKeeper(store, lease, 3.0, clock=clock.clock, sleep=clock.sleep)
    # A renewal every second; it fails twice, retried 0.5 s apart, then succeeds and the
    # heartbeat goes back to its one-second beat.
    assert [await clock.tick() for _ in range(4)] == [1.0, 0.5, 0.5, 1.0]
    assert store.failures == 0 and store.renewed == 1
    assert keeper.current().expires_at > lease.expires_at
    await keeper.release()
