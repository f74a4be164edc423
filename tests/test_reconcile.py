"""The store and the destination disagree, and the engine settles it from the destination.

A store restored to a snapshot taken mid-sync after the job finished (SQLite backup,
Redis DUMP/RESTORE) must resume to ``complete`` with the data exact; a store that lost
a job leaves staging tables that ``statesync gc`` drops (and ``status --dest`` reports).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from statesync._chunk import _RESTART_NOTE, _SWAPPED_NOTE
from statesync._cli._open import open_store
from statesync._policy import ChunkPolicy
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.errors import StatesyncError
from statesync.events import ChunkFinished, Event
from statesync.sandbox import Sandbox, SandboxConfig
from statesync.stores.sqlite import SQLiteStateStore
from support.crash import SIZES, STATESYNC, assert_exact_pg, cli
from support.engine import rows, runner
from support.postgres import pg_schema, postgres_dsn  # noqa: F401 - fixtures

# Slow: subprocess crashes and resumes (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

JOB = "rolled"
SHORT_LEASES = ChunkPolicy(max_iterations=3, page_size=10, lease_ttl=0.5)


def backup(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite file (WAL included), as an operator's backup."""
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()  # closing checkpoints the copy's WAL into its file
        source.close()


def restore(snapshot: Path, db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(snapshot, db)


# -- in process ----------------------------------------------------------------------------


class AfterChunk:
    """Calls ``act`` once, when ``entity`` finishes chunk ``index``."""

    def __init__(self, entity: str, index: int, act: Callable[[], None]) -> None:
        self.entity, self.index, self.act, self.done = entity, index, act, False

    def on_event(self, event: Event) -> None:
        at = (event.entity, event.chunk_index) if isinstance(event, ChunkFinished) else None
        if at == (self.entity, self.index) and not self.done:
            self.done = True
            self.act()


async def test_a_store_restored_behind_the_destination_completes_from_it(
    tmp_path: Path,
) -> None:
    db, snap = tmp_path / "s.db", tmp_path / "snap.db"
    data = {"a": rows(60), "b": rows(35)}
    dest = MemoryDestination()
    snapshot = AfterChunk("a", 0, lambda: backup(db, snap))
    first = runner(
        MemoryConnector(data),
        store=SQLiteStateStore(db),
        destination=dest,
        listeners=[snapshot],
        chunk_policy=SHORT_LEASES,
    )
    result = await first.sync(["a", "b"], job_id=JOB)
    await first.store.aclose()
    assert result.ok and snapshot.done
    restore(snap, db)
    store = SQLiteStateStore(db)
    assert (await store.get_entity(JOB, "a")).state.value != "complete"
    conn = MemoryConnector(data)
    # The snapshot holds this (live) process's leases: they lapse within their short TTL.
    again = runner(conn, store=store, destination=dest, chunk_policy=SHORT_LEASES, lease_wait=10)
    resumed = await again.run(JOB)
    assert resumed.ok, resumed
    assert conn.calls == 0, "nothing needed fetching: the destination had it all"
    for entity, expected in data.items():
        assert set(dest.rows(entity)) == {r["id"] for r in expected}
        notes = [t.note for t in await store.history(JOB, entity)]
        assert _SWAPPED_NOTE in notes
    await store.aclose()


async def test_staging_gone_mid_sync_restarts_the_full_sync(tmp_path: Path) -> None:
    data = {"a": rows(80)}
    dest = MemoryDestination()
    stop = AfterChunk("a", 1, lambda: first.request_stop())
    store = SQLiteStateStore(tmp_path / "s.db")
    first = runner(MemoryConnector(data), store=store, destination=dest, listeners=[stop])
    stopped = await first.sync(["a"], job_id=JOB)
    assert stopped.interrupted and 0 < stopped.entities[0].records < 80
    (table,) = await dest.list_staging()
    await dest.drop_staging(table)  # an operator's cleanup, or a destination restore
    again = runner(MemoryConnector(data), store=first.store, destination=dest)
    resumed = await again.run(JOB)
    assert resumed.ok, resumed
    assert resumed.entities[0].records == 80  # counted from the restart, not on top
    assert set(dest.rows("a")) == {r["id"] for r in data["a"]}
    assert _RESTART_NOTE in [t.note for t in await again.store.history(JOB, "a")]
    await again.store.aclose()


async def test_a_store_restored_behind_the_destinations_fence_still_writes(
    tmp_path: Path,
) -> None:
    # Three runs draw lease tokens 1, 2, 3 (the destination records 3); the store is then
    # restored to a snapshot from run 1, whose fence counter stands at 1.
    db, snap = tmp_path / "s.db", tmp_path / "snap.db"
    data = {"a": rows(150)}
    dest = MemoryDestination()
    store = SQLiteStateStore(db)

    def run_until(index: int, *extra: AfterChunk) -> Any:
        stop = AfterChunk("a", index, lambda: current.request_stop())
        current = runner(
            MemoryConnector(data),
            store=store,
            destination=dest,
            chunk_policy=SHORT_LEASES,
            listeners=[stop, *extra],
        )
        return current

    first = run_until(1, AfterChunk("a", 0, lambda: backup(db, snap)))
    assert (await first.sync(["a"], job_id=JOB)).interrupted
    for index in (2, 3):
        assert (await run_until(index).run(JOB)).interrupted
    await store.aclose()
    restore(snap, db)
    store = SQLiteStateStore(db)
    final = runner(
        MemoryConnector(data),
        store=store,
        destination=dest,
        chunk_policy=SHORT_LEASES,
        lease_wait=10,
    )
    result = await final.run(JOB)
    assert result.ok, result
    assert set(dest.rows("a")) == {r["id"] for r in data["a"]}
    await store.aclose()


# -- from the command line: SQLite and Redis stores, SQLite and PostgreSQL destinations ----


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes=SIZES)) as running:
        running.faults.configure(latency=0.1)  # slow enough to catch it mid-sync
        yield running


def _args(store: str, dest: str) -> list[str]:
    return [
        *("--store", store, "--dest", dest, "--max-iterations", "2", "--page-size", "10"),
        *("--concurrency", "2"),
    ]


def _shared(dest_kind: str) -> tuple[str, ...]:
    """`run`'s option for the shared tables, so a PostgreSQL job writes into the test's
    own ?schema= (SQLite jobs keep the default namespace, ``stripe__``)."""
    return ("--namespace", "") if dest_kind == "postgres" else ()


class SqliteStore:
    def __init__(self, tmp: Path, _redis: Any) -> None:
        self.db, self.snap = tmp / "state.db", tmp / "snap.db"
        self.url = f"sqlite:///{self.db}"

    def snapshot(self) -> None:
        backup(self.db, self.snap)

    def roll_back(self) -> None:
        restore(self.snap, self.db)

    def flush(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)


class RedisStore:
    """A private server; the snapshot is DUMP of every key, the rollback RESTORE."""

    def __init__(self, _tmp: Path, redis_server: Callable[..., Any]) -> None:
        import redis

        self.server = redis_server()
        self.url = f"{self.server.url}?prefix=rb"
        self.client = redis.Redis.from_url(self.server.url)
        self.dump: dict[bytes, tuple[bytes, int]] = {}

    def snapshot(self) -> None:
        pipe = self.client.pipeline(transaction=True)  # one consistent moment
        keys = list(self.client.scan_iter(match="rb:*"))
        for key in keys:
            pipe.dump(key)
            pipe.pttl(key)
        replies = pipe.execute()
        self.dump = {
            k: (replies[2 * i], replies[2 * i + 1])
            for i, k in enumerate(keys)
            if replies[2 * i] is not None
        }

    def roll_back(self) -> None:
        self.client.flushdb()
        for key, (value, ttl) in self.dump.items():
            self.client.restore(key, max(ttl, 0), value)

    def flush(self) -> None:
        self.client.flushdb()


def _dest(kind: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'data.db'}"
    dsn, schema = request.getfixturevalue("postgres_dsn"), request.getfixturevalue("pg_schema")
    return f"{dsn}?schema={schema}"


def _entity_progress(store: str) -> dict[str, tuple[str, int]]:
    """Each entity's state and records, read straight from the store (fast to poll)."""

    async def read() -> dict[str, tuple[str, int]]:
        opened = open_store(store)
        try:
            return {r.entity: (r.state.value, r.records) for r in await opened.list_entities(JOB)}
        except StatesyncError:
            return {}
        finally:
            await opened.aclose()

    return asyncio.run(read())


def _wait_mid_sync(store: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        progress = _entity_progress(store)
        # Some records of each landed, and one entity is far enough from its end that
        # the snapshot, taken a moment later, still finds it mid-sync.
        started = progress and all(n > 0 for _, n in progress.values())
        if started and any(n < SIZES[e] // 2 for e, (_, n) in progress.items()):
            return
        time.sleep(0.05)
    pytest.fail(f"never saw the job mid-sync: {proc.poll()}")


STORES: dict[str, type[SqliteStore | RedisStore]] = {"sqlite": SqliteStore, "redis": RedisStore}


@pytest.fixture
def store(
    store_kind: str, tmp_path: Path, redis_server: Callable[..., Any]
) -> SqliteStore | RedisStore:
    """The parametrized ``store_kind``'s store, private to the test."""
    return STORES[store_kind](tmp_path, redis_server)


@pytest.fixture
def dest(dest_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The parametrized ``dest_kind``'s destination URL, private to the test."""
    return _dest(dest_kind, tmp_path, request)


@pytest.mark.parametrize("dest_kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
def test_resume_after_the_store_was_rolled_back_ends_complete_and_exact(
    sandbox: Sandbox, tmp_path: Path, store: SqliteStore | RedisStore, dest: str, dest_kind: str
) -> None:
    env = {**os.environ, "STATESYNC_API_KEY": sandbox.config.api_key}
    entities = [a for e in SIZES for a in ("--entity", e)]
    common = _args(store.url, dest)
    run = subprocess.Popen(
        [
            STATESYNC,
            "run",
            "--base-url",
            sandbox.url,
            "--job-id",
            JOB,
            *entities,
            *common,
            *_shared(dest_kind),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_mid_sync(store.url, run)
    store.snapshot()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    store.roll_back()
    behind = _entity_progress(store.url)
    assert any(state != "complete" for state, _ in behind.values()), behind
    resumed = cli("resume", JOB, *_args(store.url, dest), env=env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert {s for s, _ in _entity_progress(store.url).values()} == {"complete"}
    if dest_kind == "sqlite":
        from support.crash import assert_exact

        assert_exact(sandbox, tmp_path / "data.db")
        assert _sqlite_staging(tmp_path / "data.db") == []
    else:
        dsn, schema = dest.split("?schema=")
        assert_exact_pg(sandbox, dsn, schema)


def _sqlite_staging(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '!_stg!_%' ESCAPE '!'")
        return [name for (name,) in found]


def _pg_staging(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            sql.SQL(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s"
                " AND tablename LIKE '!_stg!_%%' ESCAPE '!'"
            ),
            (schema,),
        )
        return [name for (name,) in found]


@pytest.mark.parametrize(("store_kind", "dest_kind"), [("sqlite", "sqlite"), ("redis", "postgres")])
def test_gc_drops_the_staging_a_flushed_store_forgot_and_keeps_live_jobs(
    sandbox: Sandbox, tmp_path: Path, store: SqliteStore | RedisStore, dest: str, dest_kind: str
) -> None:
    env = {"STATESYNC_API_KEY": sandbox.config.api_key}

    def killed_run(job: str) -> None:
        crash = {**env, "STATESYNC_CRASH_AT": "after_checkpoint:3"}
        done = cli(
            "run", "--base-url", sandbox.url, "--entity", "customers", "--job-id", job,
            *_args(store.url, dest), *_shared(dest_kind), env=crash,
        )  # fmt: skip
        assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr

    def staging() -> list[str]:
        if dest_kind == "sqlite":
            return _sqlite_staging(tmp_path / "data.db")
        dsn, schema = dest.split("?schema=")
        return _pg_staging(dsn, schema)

    killed_run("forgotten")
    (orphan,) = staging()
    store.flush()
    killed_run("alive")  # a job the new store knows, mid-sync: its staging must stay
    kept = [t for t in staging() if t != orphan]
    assert len(kept) == 1

    status = cli("status", "--store", store.url, "--dest", dest)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"orphan staging table: {orphan}" in status.stdout and "statesync gc" in status.stdout
    dry = cli("gc", "--store", store.url, "--dest", dest, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listed = json.loads(dry.stdout)["orphans"]
    assert [o["table"] for o in listed] == [orphan] and listed[0]["job"].startswith("forgotten@")
    assert sorted(staging()) == sorted([orphan, *kept])
    dropped = cli("gc", "--store", store.url, "--dest", dest)
    assert dropped.returncode == 0 and f"dropped {orphan}" in dropped.stdout, dropped.stdout
    assert staging() == kept
    again = cli("gc", "--store", store.url, "--dest", dest)
    assert "no orphan staging tables" in again.stdout
    # The job the store knows still finishes, exactly.
    resumed = cli("resume", "alive", *_args(store.url, dest), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert staging() == []
