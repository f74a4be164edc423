"""Throughput and memory of a statesync sync against a plain pagination loop.

    .venv/bin/python bench/bench_sync.py            # 100k records + the memory check
    .venv/bin/python bench/bench_sync.py --quick    # 20k records, no 1M memory run

Both sides read the same Stripe-style emulator (its own process, over loopback) and write
the same SQLite file layout in WAL mode, one transaction per page:

* plain loop: httpx pagination with ``starting_after`` + ``executemany`` upserts;
* SDK loop:   the same loop fetching through StripeConnector (the official SDK);
* statesync:  StripeConnector + SQLiteDestination + RedisStateStore, 10 pages a chunk,
  a checkpoint after every page, the full state machine.

Printed: records/s of each, statesync's ratio to the plain loop (target >= 0.85) and to
the SDK loop (the engine's own cost), and the peak RSS of statesync
syncing 100k and 1M records in fresh processes (target: 1M <= 1.3 x 100k).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from statesync import ChunkPolicy, FetchState, PageRequest, SyncMode
from statesync.adapters.local import LocalRunner
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.stores.redis import RedisStateStore

KEY = "sk_test_statesync_sandbox"
REDIS = os.environ.get("STATESYNC_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def start_emulator(records: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "statesync.sandbox", "--only", "--size", f"customers={records}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


UPSERT = (
    "INSERT INTO customers VALUES (?, ?, ?, NULL, ?) ON CONFLICT(id) DO UPDATE SET "
    "data=excluded.data, created_at=excluded.created_at, synced_at=excluded.synced_at"
)


def _plain_db(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE customers (id TEXT PRIMARY KEY, data TEXT NOT NULL, "
        "created_at TEXT, updated_at TEXT, synced_at TEXT)"
    )
    return conn


def plain_loop(url: str, db: Path) -> int:
    conn, sql = _plain_db(db), UPSERT
    total, cursor = 0, None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if cursor:
                params["starting_after"] = cursor
            body = http.get("/v1/customers", params=params).json()
            now = time.strftime("%Y-%m-%dT%H:%M:%S")
            rows = [(r["id"], json.dumps(r), str(r["created"]), now) for r in body["data"]]
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            total += len(rows)
            if not body["has_more"] or not rows:
                return total
            cursor = rows[-1][0]


async def sdk_loop(url: str, db: Path) -> int:
    """The plain loop again, but fetching through the same StripeConnector (the SDK).

    Its ratio to statesync isolates what the engine itself costs (state machine,
    per-page checkpoints in Redis, staging and swap) from what the SDK and an async
    HTTP stack cost compared with a bare synchronous httpx client.
    """
    conn = _plain_db(db)
    connector = StripeConnector(KEY, base_url=url)
    state, total = FetchState(), 0
    while state.has_more:
        page = await connector.fetch_page(PageRequest("customers", state, 100, None, SyncMode.FULL))
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        rows = [(r.id, json.dumps(r.data), str(r.data["created"]), now) for r in page.records]
        conn.execute("BEGIN")
        conn.executemany(UPSERT, rows)
        conn.execute("COMMIT")
        total += len(rows)
        state = state.advance(page)
    await connector.aclose()
    return total


async def statesync_sync(url: str, db: Path) -> int:
    runner = LocalRunner(
        connector=StripeConnector(KEY, base_url=url),
        store=RedisStateStore.from_url(REDIS, prefix=f"statesync-bench-{uuid.uuid4().hex[:8]}"),
        destination=SQLiteDestination(db),
        chunk_policy=ChunkPolicy(max_iterations=10, page_size=100),
    )
    result = await runner.sync(["customers"])
    assert result.ok, result
    await runner.connector.aclose()
    await runner.destination.aclose()
    await runner.store.aclose()
    return result.entities[0].records


def timed(label: str, fn: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    count = fn(*args)
    seconds = time.perf_counter() - start
    rate = count / seconds
    print(f"{label:<28} {count:>9,} records in {seconds:6.2f}s = {rate:>9,.0f} records/s")
    return rate


def run_async(fn: Callable[..., Coroutine[Any, Any, int]], *args: Any) -> int:
    return asyncio.run(fn(*args))


def throughput(records: int, rounds: int) -> None:
    proc, url = start_emulator(records)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ratios = []
            for n in range(rounds):
                p_db, k_db, s_db = (Path(tmp) / f"{kind}{n}.db" for kind in "pks")
                plain = timed("plain loop (sync httpx)", plain_loop, url, p_db)
                sdk = timed("plain loop (stripe SDK)", run_async, sdk_loop, url, k_db)
                ours = timed("statesync (Redis + SQLite)", run_async, statesync_sync, url, s_db)
                ratios.append((ours / plain, ours / sdk))
                print(
                    f"  ratio statesync / plain loop: {ours / plain:.3f}   "
                    f"statesync / SDK loop: {ours / sdk:.3f}"
                )
            ratios.sort()
            best = ratios[len(ratios) // 2]
            print(
                f"median of {rounds} rounds: statesync / plain loop {best[0]:.3f} "
                f"(target >= 0.85); statesync / SDK loop {best[1]:.3f}"
            )
    finally:
        proc.terminate()
        proc.wait()


def peak_rss_child(records: int) -> int:
    """Peak RSS (KiB) of a fresh process syncing ``records`` records."""
    proc, url = start_emulator(records)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, __file__, "--child", url, str(Path(tmp) / "m.db")],
                capture_output=True,
                text=True,
                check=True,
            )
    finally:
        proc.terminate()
        proc.wait()
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("URL", "DB"))
    args = parser.parse_args()
    if args.child:
        asyncio.run(statesync_sync(args.child[0], Path(args.child[1])))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return
    throughput(20_000 if args.quick else 100_000, rounds=1 if args.quick else 3)
    if args.quick:
        return
    small, large = peak_rss_child(100_000), peak_rss_child(1_000_000)
    print(
        f"peak RSS 100k: {small / 1024:.1f} MiB, 1M: {large / 1024:.1f} MiB, "
        f"ratio {large / small:.3f} (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
