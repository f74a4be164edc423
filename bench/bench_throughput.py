"""Throughput near an API's ceiling: concurrent pages, time windows, one budget, chunk sizing.

    .venv/bin/python bench/bench_throughput.py            # every scenario, ~2-3 minutes
    .venv/bin/python bench/bench_throughput.py --only close,stripe

Every scenario starts the emulator in its own process (so its CPU does not share this
process's GIL) with 50 ms per request and a limit of 100 requests/s (burst 20) for the
API key, 100 records a page. The ceiling is therefore 10,000 records/s per account.
statesync runs through the LocalRunner with a Redis state store and a SQLite destination
(one transaction per page, a checkpoint after every page), as in ``bench_sync.py``.

1. Close (offset) entity of 50,000 records: the seed's sequential chunks (10 pages each,
   one request in flight) against planned concurrent offsets (concurrency 8, one shared
   budget). Target: >= 80 % of the ceiling.
2. Stripe (cursor) entity of 50,000 records walked as concurrent created-time windows.
   Target: >= 70 % of the ceiling.
3. Three Close entities of one account at once, one budget: together >= 80 % of the one
   ceiling, with < 1 % of requests answered 429.
4. Latency 20 ms, then 200 ms mid-sync, 2 s chunk target: every chunk's duration, and the
   share within +-25 % of the target after the first two chunks of each phase (>= 90 %).
5. Zero latency, no limit: statesync with concurrency on against the plain loop of
   ``bench_sync.py`` (>= 0.85) and against statesync with one request in flight.

Emulator capacity (measured on the 2-core box, 10 concurrent clients, 50 ms latency):
about 160 requests/s for Stripe and Close pages once Close's filtered, sorted list is
cached per store version (before that cache Close re-sorted 50,000 records on every
request and served about 20 requests/s). The Close emulator decodes a list on its first
request (about a second for 50,000 records); the benchmark warms it before timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sync import plain_loop

from statesync import ChunkPolicy
from statesync.adapters.local import LocalRunner
from statesync.connector import BaseConnector
from statesync.connectors.close import CloseConnector
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.events import ChunkFinished, Event
from statesync.stores.redis import RedisStateStore

KEY = "sk_test_statesync_sandbox"
REDIS = os.environ.get("STATESYNC_BENCH_REDIS", "redis://127.0.0.1:6379/0")
LATENCY, RATE, BURST, PAGE = 0.05, 100.0, 20, 100
CEILING = RATE * PAGE
TARGET = 0.90
"""Share of the ceiling the latency-bound cases must reach (the budget paces at 95 %)."""
FAST_SERVER = Path(__file__).resolve().parent / "fast_server.py"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class FastServer:
    """``bench/fast_server.py`` in a subprocess, with the latency and limit of the ceiling."""

    def __init__(self, records: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAST_SERVER), "--records", str(records),
             "--latency", str(LATENCY), "--rate-limit", str(RATE), "--burst", str(BURST)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def stats(self) -> dict[str, float]:
        """Server CPU seconds, API requests, 429 answers, distinct Stripe filters."""
        figures: dict[str, float] = self.http.get("/_stats").json()
        return figures

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait()

    def __enter__(self) -> FastServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measured(
    server: FastServer,
    label: str,
    connector: BaseConnector,
    entities: Sequence[str],
    policy: ChunkPolicy,
    db: Path,
) -> tuple[float, float]:
    """Run one sync against the fast server; print its rate, 429s and both sides' CPU.
    Returns the share of the ceiling and the share of requests answered 429."""
    before, cpu = server.stats(), _cpu()
    records, seconds = asyncio.run(run_sync(connector, entities, policy, db))
    cpu, after = _cpu() - cpu, server.stats()
    rate = report(label, records, seconds)
    requests = after["requests"] - before["requests"]
    limited = after["limited"] - before["limited"]
    share = limited / requests if requests else 0.0
    print(
        f"  {'':<44} {requests:>7,} requests, {limited} answered 429 ({share:.2%}); "
        f"CPU: client {cpu:.2f}s, server {after['cpu'] - before['cpu']:.2f}s"
    )
    return rate / CEILING, share


class Emulator:
    """The sandbox in a subprocess, driven through its control endpoints."""

    def __init__(self, sizes: dict[str, int]) -> None:
        args = [a for e, n in sizes.items() for a in ("--size", f"{e}={n}")]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "statesync.sandbox", "--only", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def faults(self, **settings: Any) -> None:
        self.http.post("/_sandbox/faults", json=settings).raise_for_status()

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chunks:
    """Listener: every chunk's end time, duration and pages."""

    def __init__(self) -> None:
        self.done: list[tuple[float, float, int, str]] = []

    def on_event(self, event: Event) -> None:
        if isinstance(event, ChunkFinished):
            self.done.append((time.monotonic(), event.duration, event.pages, event.entity))


async def run_sync(
    connector: BaseConnector,
    entities: Sequence[str],
    policy: ChunkPolicy,
    db: Path,
    *,
    listeners: Sequence[Any] = (),
    stop_after: float | None = None,
) -> tuple[int, float]:
    """Records synced and seconds taken."""
    store = RedisStateStore.from_url(REDIS, prefix=f"statesync-bench-{uuid.uuid4().hex[:8]}")
    runner = LocalRunner(
        connector=connector,
        store=store,
        destination=SQLiteDestination(db),
        chunk_policy=policy,
        listeners=listeners,
        parallel_entities=len(entities),
    )
    if stop_after is not None:
        asyncio.get_running_loop().call_later(stop_after, runner.request_stop)
    started = time.perf_counter()
    result = await runner.sync(list(entities))
    seconds = time.perf_counter() - started
    assert result.ok or (stop_after is not None and result.interrupted), result
    await connector.aclose()
    await runner.destination.aclose()
    await store.aclose()
    return sum(e.records for e in result.entities), seconds


def report(label: str, records: int, seconds: float) -> float:
    rate = records / seconds
    print(
        f"  {label:<44} {records:>7,} records in {seconds:6.2f}s = {rate:>7,.0f} records/s"
        f"  ({rate / CEILING:6.1%} of ceiling)"
    )
    return rate


SEQUENTIAL = ChunkPolicy(max_iterations=10, page_size=PAGE)


def concurrent(**kw: Any) -> ChunkPolicy:
    return ChunkPolicy(
        max_iterations=10_000,
        page_size=PAGE,
        pages_in_flight=kw.pop("pages_in_flight", 8),
        target_duration=kw.pop("target_duration", 2.0),
        rate_limit=RATE,
        rate_burst=BURST,
        **kw,
    )


def close_offset(tmp: Path) -> list[str]:
    print("1. Close offset entity, 50,000 records (fast server)")
    with FastServer(50_000) as server:
        url = server.url + "/api/v1"
        seq, _ = measured(
            server, "seed's sequential chunks (10 pages)",
            CloseConnector(KEY, base_url=url), ["lead"], SEQUENTIAL, tmp / "c1.db",
        )  # fmt: skip
        ours, limited = measured(
            server, "planned offsets, concurrency 8, one budget",
            CloseConnector(KEY, base_url=url), ["lead"], concurrent(), tmp / "c2.db",
        )  # fmt: skip
    print(f"  speed-up {ours / seq:.1f}x")
    return [f"close offset: {ours:.1%} of ceiling (target >= {TARGET:.0%}), 429s {limited:.2%}"]


def stripe_windows(tmp: Path) -> list[str]:
    print("2. Stripe cursor entity, 50,000 records, created-time windows (fast server)")
    with FastServer(50_000) as server:
        ours, limited = measured(
            server, "windows, concurrency 8, one budget",
            StripeConnector(KEY, base_url=server.url), ["customers"], concurrent(), tmp / "s.db",
        )  # fmt: skip
        filters = server.stats()["filters"]
    print(f"  {filters:.0f} distinct created[gte]/[lt] filters for {50_000 // PAGE} full pages")
    return [f"stripe windows: {ours:.1%} of ceiling (target >= {TARGET:.0%}), 429s {limited:.2%}"]


def three_entities(tmp: Path) -> list[str]:
    print("3. Three Close entities of one account at once, one shared budget (fast server)")
    with FastServer(20_000) as server:  # lead/, contact/ and opportunity/: 20,000 each
        ours, limited = measured(
            server, "3 entities, concurrency 8 each, one budget",
            CloseConnector(KEY, base_url=server.url + "/api/v1"),
            ["lead", "contact", "opportunity"], concurrent(), tmp / "t.db",
        )  # fmt: skip
    return [
        f"three entities: {ours:.1%} of the shared ceiling (target >= {TARGET:.0%}), "
        f"429s {limited:.2%} (target < 1%)"
    ]


def latency_change(tmp: Path) -> list[str]:
    print("4. Latency 20 ms then 200 ms, chunk target 2 s (one request in flight)")
    target, phase = 2.0, 16.0
    with Emulator({"customers": 80_000}) as emu:
        emu.faults(latency=0.02)
        switched: list[float] = []

        def switch() -> None:
            emu.faults(latency=0.2)
            switched.append(time.monotonic())

        timer = threading.Timer(phase, switch)
        chunks = Chunks()
        conn = StripeConnector(KEY, base_url=emu.url)
        policy = ChunkPolicy(max_iterations=10_000, page_size=PAGE, target_duration=target)
        timer.start()
        asyncio.run(
            run_sync(
                conn, ["customers"], policy, tmp / "l.db", listeners=[chunks], stop_after=2 * phase
            )
        )
        timer.cancel()
    at = switched[0] if switched else float("inf")
    first = [c for c in chunks.done if c[0] <= at]
    second = [c for c in chunks.done if c[0] > at]
    judged: list[float] = []
    for name, phase_chunks in (("20 ms", first), ("200 ms", second)):
        shown = " ".join(f"{d:.2f}s/{p}p" for _, d, p, _ in phase_chunks)
        print(f"  {name:>6}: {shown}")
        judged += [d for _, d, _, _ in phase_chunks[2:]]
    inside = sum(1 for d in judged if abs(d - target) <= 0.25 * target)
    share = inside / len(judged) if judged else 0.0
    print(
        f"  within +-25% of {target:.0f}s after the first two chunks of each phase: "
        f"{inside}/{len(judged)} = {share:.0%}"
    )
    return [f"chunk sizing: {share:.0%} of chunks within +-25% (target >= 90%)"]


def zero_latency(tmp: Path) -> list[str]:
    print("5. Zero latency, no limit: statesync with concurrency on vs the plain loop")
    records = 50_000
    ratios: list[tuple[float, float]] = []
    with Emulator({"customers": records}) as emu:
        for n in range(3):
            started = time.perf_counter()
            count = plain_loop(emu.url, tmp / f"p{n}.db")
            plain = report("plain loop (bench_sync.py)", count, time.perf_counter() - started)
            conn = StripeConnector(KEY, base_url=emu.url)
            seq = report(
                "statesync, one request in flight",
                *asyncio.run(run_sync(conn, ["customers"], SEQUENTIAL, tmp / f"q{n}.db")),
            )
            conn = StripeConnector(KEY, base_url=emu.url)
            policy = ChunkPolicy(
                max_iterations=10_000, page_size=PAGE, pages_in_flight=8, target_duration=2.0
            )
            ours = report(
                "statesync, windows, concurrency 8",
                *asyncio.run(run_sync(conn, ["customers"], policy, tmp / f"z{n}.db")),
            )
            ratios.append((ours / plain, ours / seq))
    ratios.sort()
    plain_ratio, seq_ratio = ratios[1]
    print(
        f"  median of 3: concurrent / plain loop {plain_ratio:.2f}; "
        f"concurrent / sequential statesync {seq_ratio:.2f}"
    )
    return [
        f"zero latency: statesync (concurrency 8) / plain loop {plain_ratio:.2f} "
        f"(target >= 0.85); / statesync sequential {seq_ratio:.2f}"
    ]


SCENARIOS = {
    "close": close_offset,
    "stripe": stripe_windows,
    "three": three_entities,
    "latency": latency_change,
    "zero": zero_latency,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(SCENARIOS))
    args = parser.parse_args()
    print(
        f"emulator: {LATENCY * 1000:.0f} ms a request, {RATE:.0f} requests/s (burst {BURST}), "
        f"{PAGE} records a page: ceiling {CEILING:,.0f} records/s per account"
    )
    summary: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            summary += SCENARIOS[name](Path(tmp))
    print(f"summary ({time.perf_counter() - started:.0f}s):")
    for line in summary:
        print(f"  {line}")


if __name__ == "__main__":
    main()
