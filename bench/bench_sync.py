"""Client throughput, CPU and memory of statesync against a hand-written loop.

    .venv/bin/python bench/bench_sync.py            # fast server: 100k records, median of 3,
                                                    # then peak RSS at 100k and 1M (~4 min)
    .venv/bin/python bench/bench_sync.py --no-1m    # without the 1M memory run
    .venv/bin/python bench/bench_sync.py --quick    # 20k records, one round, no memory runs
    .venv/bin/python bench/bench_sync.py --emulator # the older run against statesync.sandbox

**Fast-server mode** (the default). ``bench/fast_server.py`` runs in its own process and
answers Stripe-style and Close-style list pages encoded at start-up (one dict look-up a
page), so the figures measure the client; it reports its own CPU seconds. Every client
runs in a fresh subprocess (its CPU is its own: ``getrusage`` of that process, all
threads) over 100k records of about 675 bytes, 100 a page:

* hand-written loop: sync httpx, stdlib json, ``executemany`` upserts into SQLite (WAL,
  ``synchronous=FULL``, a commit per page: the durability statesync gives);
* statesync: the Stripe and Close connectors, SQLiteDestination, with the SQLite state
  store and with the Redis store (127.0.0.1:6379), 10 pages a chunk, a checkpoint with
  every page (in the destination's transaction; the store written at each transition),
  the full state machine.

Printed per client, medians of 3 rounds: records/s, ratio to the loop of the same API
(target >= 0.9), client CPU seconds, server CPU seconds; then the peak RSS of statesync
(Stripe, SQLite store) syncing 100k and 1M records (targets: < 100 MB, 1M <= 1.3 x 100k).
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
from statesync.connector import BaseConnector
from statesync.connectors.close import CloseConnector
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.store import StateStore
from statesync.stores.redis import RedisStateStore
from statesync.stores.sqlite import SQLiteStateStore

FAST_SERVER = Path(__file__).resolve().parent / "fast_server.py"

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
    checkpoints, store writes, staging and swap) from what the SDK and an async
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


# -- fast-server mode ----------------------------------------------------------------

CLOSE_UPSERT = (
    "INSERT INTO lead VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET data=excluded.data, "
    "created_at=excluded.created_at, updated_at=excluded.updated_at, synced_at=excluded.synced_at"
)


def loop_close(url: str, db: Path) -> int:
    """The hand-written Close loop: ``_skip``/``_limit`` by plain offsets."""
    conn = _plain_db(db)
    conn.execute("ALTER TABLE customers RENAME TO lead")
    total = 0
    with httpx.Client(base_url=url, auth=(KEY, "")) as http:
        while True:
            params: dict[str, str | int] = {
                "_skip": total,
                "_limit": 100,
                "_order_by": "date_created",
            }
            body = http.get("/api/v1/lead/", params=params).json()
            now = time.strftime("%Y-%m-%dT%H:%M:%S")
            rows = [
                (r["id"], json.dumps(r), r["date_created"], r["date_updated"], now)
                for r in body["data"]
            ]
            conn.execute("BEGIN")
            conn.executemany(CLOSE_UPSERT, rows)
            conn.execute("COMMIT")
            total += len(rows)
            if not body["has_more"] or not rows:
                return total


def _connector(api: str, url: str) -> tuple[BaseConnector, str]:
    if api == "stripe":
        return StripeConnector(KEY, base_url=url), "customers"
    return CloseConnector(KEY, base_url=url + "/api/v1", entities=["lead"]), "lead"


def _store(kind: str, db: Path) -> StateStore:
    if kind == "redis":
        return RedisStateStore.from_url(REDIS, prefix=f"statesync-bench-{uuid.uuid4().hex[:8]}")
    return SQLiteStateStore(db.with_name(db.stem + "-state.db"))


async def statesync_run(api: str, store_kind: str, url: str, db: Path) -> int:
    connector, entity = _connector(api, url)
    runner = LocalRunner(
        connector=connector,
        store=_store(store_kind, db),
        destination=SQLiteDestination(db),
        chunk_policy=ChunkPolicy(max_iterations=10, page_size=100),
    )
    result = await runner.sync([entity])
    assert result.ok, result
    await runner.connector.aclose()
    await runner.destination.aclose()
    await runner.store.aclose()
    return result.entities[0].records


CLIENTS: dict[str, tuple[str, str]] = {
    # name: (api, what runs)
    "loop stripe": ("stripe", "loop"),
    "statesync stripe, SQLite store": ("stripe", "sqlite"),
    "statesync stripe, Redis store": ("stripe", "redis"),
    "loop close": ("close", "loop"),
    "statesync close, SQLite store": ("close", "sqlite"),
    "statesync close, Redis store": ("close", "redis"),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(name: str, url: str, db: Path) -> None:
    """Run one client in this (fresh) process; print its figures as one JSON line."""
    api, kind = CLIENTS[name]
    cpu, started = _cpu(), time.perf_counter()
    if kind == "loop":
        count = plain_loop(url, db) if api == "stripe" else loop_close(url, db)
    else:
        count = asyncio.run(statesync_run(api, kind, url, db))
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": count, "seconds": seconds, "cpu": cpu, "rss_kib": rss}))


class FastServer:
    """``bench/fast_server.py`` in its own process."""

    def __init__(self, records: int, *, lazy: bool = False) -> None:
        argv = [sys.executable, str(FAST_SERVER), "--records", str(records)]
        self.proc = subprocess.Popen([*argv, *(["--lazy"] if lazy else [])],
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.http = httpx.Client(base_url=self.url)

    def cpu(self) -> float:
        seconds: float = self.http.get("/_cpu").json()["cpu"]
        return seconds

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait()


def run_client(server: FastServer, name: str, db: Path) -> dict[str, float]:
    before = server.cpu()
    out = subprocess.run(
        [sys.executable, __file__, "--client", name, server.url, str(db)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["server_cpu"] = server.cpu() - before
    return figures


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def fast_throughput(records: int, rounds: int, names: list[str]) -> None:
    server = FastServer(records)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(rounds):
                for i, name in enumerate(names):
                    got = run_client(server, name, Path(tmp) / f"r{n}-{i}.db")
                    assert got["records"] == records, (name, got)
                    runs[name].append(got)
                    print(f"  round {n + 1}: {name:<32} {records / got['seconds']:>9,.0f} "
                          f"records/s, client CPU {got['cpu']:5.2f}s", flush=True)  # fmt: skip
    finally:
        server.close()
    print(f"\n{records:,} records of ~675 B, 100 a page; median of {rounds}; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'client':<32} {'records/s':>10} {'vs loop':>8} {'client CPU':>11} "
          f"{'us/record':>10} {'server CPU':>11}")  # fmt: skip
    loops: dict[str, float] = {}
    for name in names:
        api, kind = CLIENTS[name]
        rate = _median([records / r["seconds"] for r in runs[name]])
        cpu = _median([r["cpu"] for r in runs[name]])
        server_cpu = _median([r["server_cpu"] for r in runs[name]])
        if kind == "loop":
            loops[api] = rate
        ratio = f"{rate / loops[api]:.2f}x" if api in loops else "-"
        print(f"{name:<32} {rate:>10,.0f} {ratio:>8} {cpu:>10.2f}s "
              f"{cpu / records * 1e6:>10.1f} {server_cpu:>10.2f}s")  # fmt: skip
    print("targets: statesync >= 0.9x the loop of the same API")


def fast_rss(records: int) -> int:
    """Peak RSS (KiB) of a fresh process syncing ``records`` Stripe records (SQLite store)."""
    server = FastServer(records, lazy=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            got = run_client(server, "statesync stripe, SQLite store", Path(tmp) / "m.db")
    finally:
        server.close()
    return int(got["rss_kib"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20k records, one round")
    parser.add_argument("--no-1m", action="store_true", help="skip the 1M memory run")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", default="stripe,close", help="APIs to run")
    parser.add_argument("--emulator", action="store_true", help="against statesync.sandbox")
    parser.add_argument("--child", nargs=2, metavar=("URL", "DB"))
    parser.add_argument("--client", nargs=3, metavar=("NAME", "URL", "DB"))
    args = parser.parse_args()
    if args.client:
        child(args.client[0], args.client[1], Path(args.client[2]))
        return
    if args.child:
        asyncio.run(statesync_sync(args.child[0], Path(args.child[1])))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return
    if args.emulator:
        emulator_main(args.quick)
        return
    records = args.records or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    apis = args.only.split(",")
    names = [name for name, (api, _) in CLIENTS.items() if api in apis]
    fast_throughput(records, rounds, names)
    if args.quick:
        return
    small = fast_rss(100_000)
    large = None if args.no_1m else fast_rss(1_000_000)
    print(f"peak RSS, statesync stripe + SQLite store: 100k {small / 1024:.1f} MiB", end="")
    if large is not None:
        print(f", 1M {large / 1024:.1f} MiB, ratio {large / small:.2f}", end="")
    print(" (targets: < 100 MB; 1M <= 1.3x 100k)")


def emulator_main(quick: bool) -> None:
    throughput(20_000 if quick else 100_000, rounds=1 if quick else 3)
    if quick:
        return
    small, large = peak_rss_child(100_000), peak_rss_child(1_000_000)
    print(
        f"peak RSS 100k: {small / 1024:.1f} MiB, 1M: {large / 1024:.1f} MiB, "
        f"ratio {large / small:.3f} (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
