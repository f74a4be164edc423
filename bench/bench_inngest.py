"""Replay cost per chunk stays bounded however long the sync: hand-over at work.

Inngest re-invokes a function with every earlier step result on each step, so one run
of n chunks costs O(n^2). The adapter hands over to a fresh run every ``chunks_per_run``
chunks, so the SDK handler time per chunk of a 2,000-chunk sync should stay within
1.5x that of a 200-chunk sync (both at the default ``chunks_per_run=200``).

    .venv/bin/python bench/bench_inngest.py

Drives the real SDK handler over HTTP through the test executor (``tests/``), with an
in-memory connector, store and destination, one page of one record per chunk.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import inngest
from inngest_executor import serving

from statesync import ChunkPolicy, PolicySet
from statesync.adapters.inngest import job_requested, sync_functions
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.stores.memory import MemoryStateStore

LIMIT = 1.5
ONE_RECORD_CHUNKS = PolicySet(chunk=ChunkPolicy(max_iterations=1, page_size=1))


async def per_chunk(chunks: int) -> tuple[float, int]:
    """SDK handler seconds per chunk over the entity runs, and how many runs it took."""
    connector = MemoryConnector({"items": [{"id": f"r{i:06d}"} for i in range(chunks)]})

    def make(client: inngest.Inngest) -> list[inngest.Function[Any]]:
        return sync_functions(
            client,
            connectors={"memory": lambda spec: connector},
            store=MemoryStateStore(),
            destination=MemoryDestination(),
            policies=ONE_RECORD_CHUNKS,
        )

    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["items"], job_id=f"bench-{chunks}"))
        await ex.run_until_idle(within=600)
    runs = ex.runs_of("-entity")
    assert connector.calls == chunks and all(r.status == "completed" for r in runs)
    return sum(r.handler_seconds for r in runs) / chunks, len(runs)


async def main() -> int:
    await per_chunk(50)  # warm up imports, pools and caches
    small = [await per_chunk(200) for _ in range(3)]
    large = [await per_chunk(2000) for _ in range(2)]
    # The load of a shared machine only ever adds time, so the best of each is fairest.
    small_t = min(t for t, _ in small)
    large_t = min(t for t, _ in large)
    ratio = large_t / small_t
    print(f"200 chunks:   {small_t * 1000:6.2f} ms/chunk  ({small[0][1]} run)")
    print(f"2,000 chunks: {large_t * 1000:6.2f} ms/chunk  ({large[0][1]} runs)")
    print(f"ratio: {ratio:.2f} (limit {LIMIT})")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
