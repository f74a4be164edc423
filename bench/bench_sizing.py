"""Chunk sizing by execution time, measured: do chunks keep their target duration?

    .venv/bin/python bench/bench_sizing.py            # a few seconds
    .venv/bin/python bench/bench_sizing.py --target 0.3

A memory connector answers each page after a fixed latency (2 ms, then 20 ms from the
fifth chunk on); the chunk policy aims at ``--target`` seconds per chunk. Prints, per
chunk, the pages it made, its duration as a ratio of the target and the measured seconds
per call. Targets: every chunk after the first within 0.5-1.5 x the target; pages per
chunk at 2 ms more than twice those at 20 ms. (Moved out of the unit tests: wall-clock
durations on a shared machine are a measurement, not an assertion.)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from statesync import ChunkPolicy, PageRequest, perform_sync_chunk
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.stores.memory import MemoryStateStore


class Latent(MemoryConnector):
    latency = 0.002

    async def fetch_page(self, request: PageRequest) -> Any:
        await asyncio.sleep(self.latency)
        return await super().fetch_page(request)


async def main(target: float, chunks: int, switch_after: int) -> None:
    conn = Latent({"a": [{"id": f"r{i:06d}"} for i in range(100_000)]})
    policy = ChunkPolicy(max_iterations=1000, page_size=10, target_duration=target)
    store, dest = MemoryStateStore(), MemoryDestination()
    job = await LocalRunner(connector=conn, store=store, destination=dest).create_job(["a"])
    print(f"{'chunk':>5} {'latency':>8} {'pages':>6} {'x target':>9} {'s/call':>8}")
    pages: dict[float, list[int]] = {}
    ratios = []
    for n in range(chunks):
        if n == switch_after:
            conn.latency = 0.02
        started = time.monotonic()
        out = await perform_sync_chunk(
            job_id=job, entity="a", connector=conn, store=store, destination=dest,
            chunk_policy=policy,
        )  # fmt: skip
        ratio = (time.monotonic() - started) / target
        rec = await store.get_entity(job, "a")
        print(
            f"{n:>5} {conn.latency:>8.3f} {out.pages:>6} {ratio:>9.2f} {rec.seconds_per_call:>8.4f}"
        )
        if n not in (0, switch_after):  # the first chunk at a latency has no measurement yet
            pages.setdefault(conn.latency, []).append(out.pages)
            ratios.append(ratio)
    fast, slow = min(pages[0.002]), max(pages[0.02])
    print(f"duration / target: {min(ratios):.2f} .. {max(ratios):.2f} (target 0.5 .. 1.5)")
    print(f"pages at 2 ms / pages at 20 ms: {fast / slow:.1f} (target > 2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.15)
    parser.add_argument("--chunks", type=int, default=9)
    parser.add_argument("--switch-after", type=int, default=4)
    ns = parser.parse_args()
    asyncio.run(main(ns.target, ns.chunks, ns.switch_after))
