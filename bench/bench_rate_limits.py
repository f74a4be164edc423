"""Default settings under an unknown rate limit, against the best hand-set flags.

    .venv/bin/python bench/bench_rate_limits.py              # two runs of 50 s, ~2 minutes
    .venv/bin/python bench/bench_rate_limits.py --seconds 40

Three Stripe entities of one account against the emulator (in its own process) limiting
the API key to 20 requests/s (a token bucket of 20, refusals answered Stripe's way: 429
with ``Retry-After: 1``, no quota headers, so nothing tells the client the limit) with
50 ms per request, 100 records a page: the API's ceiling is 20 x 100 = 2,000 records/s.

* **defaults**: ``ChunkPolicy()`` and ``RetryPolicy()`` as they come, no rate configured:
  the account's budget learns the limit (AIMD).
* **hand-set**: the same with the limit told (``rate_limit=20, rate_burst=20``).

Each run stops after ``--seconds`` and prints the share of the ceiling reached, the share
of requests answered 429, and that share after the first 30 s (when learning is over).
Targets with defaults: >= 85 % of the ceiling, <= 5 % 429s after the first 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from statesync import ChunkPolicy
from statesync.adapters.local import LocalRunner
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.stores.memory import MemoryStateStore

KEY = "sk_test_statesync_sandbox"
RATE, LATENCY, PAGE = 20.0, 0.05, 100
CEILING = RATE * PAGE
ENTITIES = ("customers", "invoices", "charges")
WARM = 30.0


class Emulator:
    """The sandbox in a subprocess, limits switched on from its command line."""

    def __init__(self, size: int) -> None:
        sizes = [a for e in ENTITIES for a in ("--size", f"{e}={size}")]
        flags = ["--latency", str(LATENCY), "--rate-limit", str(RATE), "--retry-after", "1"]
        cmd = [sys.executable, "-m", "statesync.sandbox", "--only", *sizes, *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.http.get("/_sandbox/log").json()
        return entries

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait()


async def run(url: str, policy: ChunkPolicy, db: Path, seconds: float) -> tuple[int, float]:
    connector = StripeConnector(KEY, base_url=url)
    runner = LocalRunner(
        connector=connector,
        store=MemoryStateStore(),
        destination=SQLiteDestination(db),
        chunk_policy=policy,
        parallel_entities=len(ENTITIES),
    )
    asyncio.get_running_loop().call_later(seconds, runner.request_stop)
    started = time.perf_counter()
    result = await runner.sync(list(ENTITIES))
    took = time.perf_counter() - started
    await connector.aclose()
    await runner.destination.aclose()
    failed = [e.entity for e in result.entities if e.state.value == "failed"]
    assert not failed, f"entities failed: {failed}"
    return sum(e.records for e in result.entities), took


def shares(log: list[dict[str, Any]]) -> tuple[float, float, int]:
    refused = [e["status"] == 429 for e in log]
    start = log[0]["started"] if log else 0.0
    later = [e["status"] == 429 for e in log if e["started"] - start >= WARM]
    return sum(refused) / max(1, len(refused)), sum(later) / max(1, len(later)), len(log)


def scenario(label: str, policy: ChunkPolicy, seconds: float, tmp: Path) -> str:
    # Enough records that no entity finishes before the stop.
    emulator = Emulator(size=int(CEILING * seconds / len(ENTITIES) * 1.3))
    try:
        records, took = asyncio.run(run(emulator.url, policy, tmp / f"{label}.db", seconds))
        all_429, late_429, requests = shares(emulator.log())
    finally:
        emulator.close()
    ceiling = records / took / CEILING
    line = (
        f"{label:<10} {records:>7,} records in {took:5.1f}s = {ceiling:6.1%} of the ceiling; "
        f"{requests} requests, 429s {all_429:5.2%} overall, {late_429:5.2%} after {WARM:.0f}s"
    )
    print(line, flush=True)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=50.0, help="length of each run")
    args = parser.parse_args()
    print(f"3 Stripe entities, {RATE:.0f} req/s limit, {LATENCY * 1000:.0f} ms, page {PAGE}")
    with tempfile.TemporaryDirectory() as tmp:
        scenario("defaults", ChunkPolicy(), args.seconds, Path(tmp))
        hand = ChunkPolicy(rate_limit=RATE, rate_burst=int(RATE))
        scenario("hand-set", hand, args.seconds, Path(tmp))
    print("targets with defaults: >= 85% of the ceiling, <= 5% 429s after the first 30 s")


if __name__ == "__main__":
    main()
