"""Chunk sizing by execution time: the calls per chunk follow the API's measured latency."""

from __future__ import annotations

import asyncio
from typing import Any

from statesync import ChunkPolicy, PageRequest, perform_sync_chunk
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.stores.memory import MemoryStateStore


class Latent(MemoryConnector):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.latency = 0.002

    async def fetch_page(self, request: PageRequest) -> Any:
        await asyncio.sleep(self.latency)
        return await super().fetch_page(request)


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:06d}"} for i in range(n)]


async def run_chunks(policy: ChunkPolicy, conn: Latent, switch_after: int, chunks: int) -> Any:
    store, dest = MemoryStateStore(), MemoryDestination()
    job = await LocalRunner(connector=conn, store=store, destination=dest).create_job(["a"])
    seen: list[tuple[int, float | None]] = []
    for n in range(chunks):
        if n == switch_after:
            conn.latency = 0.02
        out = await perform_sync_chunk(
            job_id=job,
            entity="a",
            connector=conn,
            store=store,
            destination=dest,
            chunk_policy=policy,
        )
        rec = await store.get_entity(job, "a")
        seen.append((out.pages, rec.seconds_per_call))
    return seen


# Whether chunks keep their target duration is measured in bench/bench_sizing.py: wall
# time on a shared machine is a benchmark's ratio, not a unit test's assertion.


async def test_the_bounds_win_over_the_target() -> None:
    conn = Latent({"a": rows(10_000)})
    capped = ChunkPolicy(max_iterations=5, page_size=10, target_duration=10.0)
    assert all(p == 5 for p, _ in await run_chunks(capped, conn, switch_after=99, chunks=3))
    conn.latency = 0.02
    floor = ChunkPolicy(max_iterations=50, min_iterations=4, page_size=10, target_duration=0.001)
    assert all(p == 4 for p, _ in await run_chunks(floor, conn, switch_after=0, chunks=3))


def test_iterations_from_a_measurement() -> None:
    policy = ChunkPolicy(max_iterations=500, min_iterations=2, target_duration=2.0)
    assert policy.iterations(None) == 500
    assert policy.iterations(0.02) == 125  # 100 calls fill the target, a quarter of headroom
    assert policy.iterations(0.2) == 13
    assert policy.iterations(5.0) == 2
    assert ChunkPolicy(max_iterations=7).iterations(0.001) == 7  # no target: fixed size
    assert ChunkPolicy.for_timeout(3600, fraction=0.25).target_duration == 900


async def test_the_measurement_survives_in_the_store() -> None:
    conn = Latent({"a": rows(500)})
    store, dest = MemoryStateStore(), MemoryDestination()
    policy = ChunkPolicy(max_iterations=1000, page_size=10, target_duration=0.05)
    runner = LocalRunner(connector=conn, store=store, destination=dest, chunk_policy=policy)
    job = await runner.create_job(["a"])
    await perform_sync_chunk(
        job_id=job, entity="a", connector=conn, store=store, destination=dest, chunk_policy=policy
    )
    rec = await store.get_entity(job, "a")
    # Measured and kept for the next chunk's size (its value is the bench's business).
    assert rec.seconds_per_call is not None and rec.seconds_per_call > 0
