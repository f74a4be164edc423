"""Replay cost inside a run, and per chunk however long the sync: hand-over at work.

Inngest re-invokes a function with every earlier step result on each request, and the
SDK walks (and, in its memo lookup, copies) them all, so a run's n-th request costs more
the larger n. Two figures, both at the default ``chunks_per_run``:

1. the SDK handler time of the last 20 chunk requests of a run against its first 20
   (target <= 1.1: replay stays within 10% of the chunk work), also shown, for the
   trade-off, at the allowed maximum;
2. the handler time per chunk of a 2,000- and a 10,000-chunk sync against a 200-chunk
   one (target <= 1.2: hand-over keeps the cost flat however long the sync).

Both are the SDK handler's CPU time (its server thread's, reported per request by the
test server), and the second is the median over entity runs of each run's cost per
chunk (locate and hand-over included): on a shared 2-core machine other processes
inflate any one request or run at random, and wall-clock time most, which is printed
beside it for reference.

    .venv/bin/python bench/bench_inngest.py

Drives the real SDK handler over HTTP through the test executor (``tests/``), with an
in-memory connector, store and destination and one page of one record per chunk: the
cheapest chunk there is, so replay's share is the largest it can be. Takes a few minutes.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import inngest

from statesync import ChunkPolicy, PolicySet
from statesync.adapters.inngest import (
    DEFAULT_CHUNKS_PER_RUN,
    MAX_CHUNKS_PER_RUN,
    job_requested,
    sync_functions,
)
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.stores.memory import MemoryStateStore
from support.inngest_executor import Executor, serving

IN_RUN_LIMIT = 1.1
ACROSS_RUNS_LIMIT = 1.2
WINDOW = 20
ONE_RECORD_CHUNKS = PolicySet(chunk=ChunkPolicy(max_iterations=1, page_size=1))


async def sync(chunks: int, chunks_per_run: int) -> Executor:
    gc.collect()  # the previous sync's executor and server, not this one's, are garbage
    connector = MemoryConnector({"items": [{"id": f"r{i:06d}"} for i in range(chunks)]})

    def make(client: inngest.Inngest) -> list[inngest.Function[Any]]:
        return sync_functions(
            client,
            connectors={"memory": lambda spec: connector},
            store=MemoryStateStore(),
            destination=MemoryDestination(),
            policies=ONE_RECORD_CHUNKS,
            chunks_per_run=chunks_per_run,
        )

    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["items"], job_id=f"bench-{chunks}"))
        await ex.run_until_idle(within=900)
    runs = ex.runs_of("-entity")
    assert connector.calls == chunks and all(r.status == "completed" for r in runs)
    return ex


async def in_run(chunks_per_run: int, runs: int) -> tuple[float, float]:
    """Median seconds of the first and of the last WINDOW chunk requests of full runs."""
    ex = await sync(chunks_per_run * runs, chunks_per_run)
    first: list[float] = []
    last: list[float] = []
    for run in ex.runs_of("-entity"):
        # Request 0 is the locate step; then one request per chunk; then the hand-over.
        chunk_requests = run.request_cpu[1 : chunks_per_run + 1]
        first += chunk_requests[:WINDOW]
        last += chunk_requests[-WINDOW:]
    return statistics.median(first), statistics.median(last)


async def per_chunk(chunks: int) -> tuple[list[float], list[float]]:
    """CPU and wall seconds per chunk of each entity run (its requests over its chunks)."""
    ex = await sync(chunks, DEFAULT_CHUNKS_PER_RUN)
    cpu, wall = [], []
    for run in ex.runs_of("-entity"):
        n = sum(1 for name in run.step_names if "-chunk-" in name)
        cpu.append(sum(run.request_cpu) / n)
        wall.append(run.handler_seconds / n)
    return cpu, wall


def best(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
    # The load of a shared machine only ever adds time: the best of each is fairest.
    first, last = min(s[0] for s in samples), min(s[1] for s in samples)
    return first, last, last / first


async def main() -> int:
    await per_chunk(100)  # warm up imports, pools and caches
    default = best([await in_run(DEFAULT_CHUNKS_PER_RUN, 8) for _ in range(3)])
    widest = best([await in_run(MAX_CHUNKS_PER_RUN, 3) for _ in range(2)])
    per: dict[int, tuple[list[float], list[float]]] = {n: ([], []) for n in (200, 2000, 10_000)}
    for n, rounds in ((200, 2), (2000, 1), (10_000, 1), (200, 2), (2000, 1)):
        # Sizes interleaved, so a spell of load elsewhere does not land on one size only.
        for _ in range(rounds):
            cpu_runs, wall_runs = await per_chunk(n)
            per[n][0].extend(cpu_runs)
            per[n][1].extend(wall_runs)
    for label, cpr, (first, last, ratio) in (
        ("default", DEFAULT_CHUNKS_PER_RUN, default),
        ("maximum", MAX_CHUNKS_PER_RUN, widest),
    ):
        print(
            f"in a run, chunks_per_run={cpr} ({label}): first {WINDOW} requests "
            f"{first * 1000:5.2f} ms, last {WINDOW} {last * 1000:5.2f} ms, ratio {ratio:.2f}"
            + (f" (limit {IN_RUN_LIMIT})" if label == "default" else " (for the trade-off)")
        )
    # A typical run's cost per chunk (median over runs): a longer sync is only more runs.
    cpu = {n: statistics.median(c) for n, (c, _) in per.items()}
    wall = {n: statistics.median(w) for n, (_, w) in per.items()}
    worst = 0.0
    for n, (runs, _) in per.items():
        ratio = cpu[n] / cpu[200]
        worst = max(worst, ratio)
        print(
            f"{n:>6,} chunks ({len(runs):>3} runs measured): {cpu[n] * 1000:5.2f} ms CPU/chunk, "
            f"x{ratio:.2f}; wall {wall[n] * 1000:5.2f} ms, x{wall[n] / wall[200]:.2f}"
        )
    print(f"per chunk, worst vs 200 chunks: {worst:.2f} (limit {ACROSS_RUNS_LIMIT})")
    return 0 if default[2] <= IN_RUN_LIMIT and worst <= ACROSS_RUNS_LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
