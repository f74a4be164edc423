"""Concurrent pages in one chunk: planned offsets, settled in order, never a gap or a repeat."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from statesync import ChunkPolicy, PageRequest, RetryPolicy, SyncState
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.errors import ConnectorError, TransientError
from statesync.stores.memory import MemoryStateStore
from support.throughput import FAST, LoggingDestination


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:05d}", "n": i} for i in range(n)]


class SlowMemory(MemoryConnector):
    """A memory connector whose answers take ``latency`` seconds and that counts overlap."""

    def __init__(self, *args: Any, latency: float = 0.005, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.latency = latency
        self.in_flight = 0
        self.most_in_flight = 0
        self.offsets: list[int] = []

    async def fetch_page(self, request: PageRequest) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.offsets.append(request.state.offset or 0)
        try:
            await asyncio.sleep(self.latency * (0.5 + random.random()))
            return await super().fetch_page(request)
        finally:
            self.in_flight -= 1


def make_runner(conn: MemoryConnector, dest: MemoryDestination, **policy: Any) -> LocalRunner:
    store, retry = policy.pop("store", MemoryStateStore()), policy.pop("retry", FAST)
    return LocalRunner(
        connector=conn,
        store=store,
        destination=dest,
        chunk_policy=ChunkPolicy(**{"max_iterations": 8, "page_size": 10, **policy}),
        retry_policy=retry,
        namespace="",  # the shared tables: this test is not about namespaces
    )


def assert_exact_once(dest: LoggingDestination, entity: str, n: int) -> None:
    written = dest.written.get(entity, [])
    dupes = [i for i, c in Counter(written).items() if c > 1]
    assert not dupes, f"pages landed twice: {dupes[:5]}"
    assert set(written) == {r["id"] for r in rows(n)}
    # Landed strictly in order: the checkpoint never passed a page that had not committed.
    assert written == sorted(written)


@pytest.mark.parametrize("n", [0, 5, 10, 95, 100, 333])
async def test_planned_offsets_land_every_record_once_in_order(n: int) -> None:
    conn, dest = SlowMemory({"a": rows(n)}), LoggingDestination()
    r = make_runner(conn, dest, pages_in_flight=4)
    result = await r.sync(["a"])
    assert result.ok
    assert_exact_once(dest, "a", n)
    rec = await r.store.get_entity(result.job_id, "a")
    assert rec.records == n and rec.api_calls == max(1, -(-n // 10))
    if n >= 100:
        assert conn.most_in_flight == 4


async def test_early_end_drops_planned_pages_past_it() -> None:
    conn, dest = SlowMemory({"a": rows(25)}), LoggingDestination()
    r = make_runner(conn, dest, pages_in_flight=8, max_iterations=50)
    assert (await r.sync(["a"])).ok
    assert_exact_once(dest, "a", 25)
    rec = await r.store.get_entity((await r.store.list_jobs())[0].job_id, "a")
    assert rec.api_calls == 3 and rec.fetch_state.offset == 25 and not rec.fetch_state.has_more


async def test_a_chunk_never_launches_more_than_its_iterations() -> None:
    conn, dest = SlowMemory({"a": rows(200)}), LoggingDestination()
    r = make_runner(conn, dest, pages_in_flight=6, max_iterations=4)
    assert (await r.sync(["a"])).ok
    assert conn.most_in_flight <= 4
    assert conn.calls == 20  # nothing fetched only to be thrown away at chunk ends


@pytest.mark.parametrize("failing_offset", [50, 60, 70, 80])
async def test_failure_in_the_middle_of_a_batch_resumes_without_loss_or_repeat(
    failing_offset: int,
) -> None:
    failed: list[int] = []

    def fault(request: PageRequest, call: int) -> ConnectorError | None:
        if (request.state.offset or 0) == failing_offset and not failed:
            failed.append(call)
            return TransientError("503 in the middle of a batch")
        return None

    conn, dest = SlowMemory({"a": rows(200)}, fault=fault), LoggingDestination()
    r = make_runner(conn, dest, pages_in_flight=4, max_iterations=20)
    result = await r.sync(["a"])
    assert result.ok and failed
    assert_exact_once(dest, "a", 200)
    history = await r.store.history(result.job_id, "a")
    assert [t.trigger for t in history].count("retry_chunk") == 1


@pytest.mark.parametrize("seed", range(6))
async def test_random_failures_and_stops_never_lose_or_repeat(seed: int) -> None:
    rng = random.Random(seed)
    store, dest = MemoryStateStore(), LoggingDestination()
    data = {"a": rows(rng.randrange(50, 400)), "b": rows(rng.randrange(0, 120))}
    runners: list[LocalRunner] = []

    def fault(request: PageRequest, call: int) -> ConnectorError | None:
        roll = rng.random()
        if roll < 0.05 and runners:
            runners[-1].request_stop()
        return TransientError("flaky") if roll > 0.9 else None

    for _ in range(30):
        conn = SlowMemory(data, fault=fault, latency=0.002)
        retry = RetryPolicy(attempts=50, initial_delay=0.001, jitter=0)
        r = make_runner(conn, dest, store=store, retry=retry, pages_in_flight=rng.choice([2, 3, 5]))
        runners.append(r)
        jobs = await store.list_jobs()
        result = await (r.run(jobs[0].job_id) if jobs else r.sync(["a", "b"]))
        if result.ok:
            break
    else:
        pytest.fail("the job never finished")
    for entity, expected in data.items():
        written = dest.written.get(entity, [])
        assert set(written) == {x["id"] for x in expected}
        assert not [i for i, c in Counter(written).items() if c > 1]


async def test_interrupted_batch_resumes_exactly_after_its_last_checkpoint() -> None:
    store, dest = MemoryStateStore(), LoggingDestination()
    conn = SlowMemory({"a": rows(300)})
    first = make_runner(conn, dest, store=store, pages_in_flight=5, max_iterations=30)

    def stop_at(request: PageRequest, call: int) -> None:
        if call == 9:
            first.request_stop()

    conn.fault = stop_at
    result = await first.sync(["a"])
    assert result.interrupted
    rec = await store.get_entity(result.job_id, "a")
    assert rec.state is SyncState.FETCHING and rec.records == len(dest.written["a"])
    conn.fault = None
    second = make_runner(conn, dest, store=store, pages_in_flight=5, max_iterations=30)
    assert (await second.run(result.job_id)).ok
    assert_exact_once(dest, "a", 300)
