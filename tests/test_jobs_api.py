"""The job API for services: handles, per-job stop, cancel, status, instances, namespaces.

Runs on every store (memory, SQLite, a real Redis) with in-memory connectors; the
ASGI service test drives the same API over HTTP against the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from statesync import (
    ChunkPolicy,
    EntityRecord,
    JobHandle,
    JobSpec,
    JobStatus,
    Liveness,
    Outcome,
    RetryPolicy,
    StateStore,
    SyncMode,
    SyncState,
    cancel_job,
    default_namespace,
    job_status,
)
from statesync._namespace import job_namespace
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destination import Destination
from statesync.destinations.memory import MemoryDestination
from statesync.errors import JobBusyError, TransientError, UnknownEntityError, UnknownJobError
from support.postgres import pg_schema, postgres_dsn  # noqa: F401 - fixtures
from support.stores import store  # noqa: F401 - the parametrised store fixture

FAST = RetryPolicy(attempts=4, initial_delay=0.001, jitter=0)


def rows(n: int, tag: str = "a", month: int = 1) -> list[dict[str, Any]]:
    stamp = f"2026-{month:02d}-01T00:{{:02d}}:00+00:00"
    return [{"id": f"r{i:04d}", "tag": tag, "updated_at": stamp.format(i % 60)} for i in range(n)]


class Slow(MemoryConnector):
    """A memory connector whose calls take a little while (so a job can be caught mid-run)."""

    def __init__(self, data: dict[str, list[dict[str, Any]]], delay: float = 0.01, **kw: Any):
        super().__init__(data, **kw)
        self.delay = delay

    async def fetch_page(self, request: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await super().fetch_page(request)


async def until(handle: JobHandle, check: Callable[[JobStatus], bool]) -> None:
    """Poll the handle's status as a service would (bounded: 10 s)."""
    for _ in range(1000):
        if check(await handle.status()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the job never got there")


def runner(conn: MemoryConnector, st: StateStore, dest: Destination, **kw: Any) -> LocalRunner:
    return LocalRunner(
        connector=conn,
        store=st,
        destination=dest,
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=10, lease_ttl=5),
        retry_policy=kw.pop("retry_policy", FAST),
        namespace=kw.pop("namespace", ""),  # the shared tables unless a test names one
        **kw,
    )


async def test_get_lease_reports_the_holder_until_release(store: StateStore) -> None:
    r = runner(MemoryConnector({"a": rows(1)}), store, MemoryDestination())
    job = await r.create_job(["a"], job_id="lease-job")
    assert await store.get_lease(job, "a") is None
    lease = await store.acquire_lease(job, "a", "host:1:x", 10)
    assert lease is not None
    got = await store.get_lease(job, "a")
    assert got is not None and got.owner == "host:1:x" and got.token == lease.token
    assert abs(got.expires_at - lease.expires_at) < 1
    await store.release_lease(lease)
    assert await store.get_lease(job, "a") is None


async def test_two_handles_one_stopped_one_cancelled(store: StateStore) -> None:
    dest = MemoryDestination()
    r = runner(Slow({"a": rows(200), "b": rows(200)}), store, dest)
    first = await r.start(["a", "b"], job_id="first")
    second = await r.start(["a", "b"], job_id="second")
    await until(first, lambda st: st.entity("a").records >= 20)
    first.stop()
    stopped = await first.wait()
    assert stopped.interrupted and stopped.outcomes() == {Outcome.INTERRUPTED}
    assert not second.done  # the other job of the same runner goes on
    cancelled = await second.cancel()
    assert set(cancelled.cancelled) == {"a", "b"} and cancelled.ok
    states = {e.entity: e.state for e in (await second.status()).entities}
    assert states == {"a": SyncState.CANCELLED, "b": SyncState.CANCELLED}
    status = await job_status(store, "first")
    assert all(e.liveness is Liveness.STALLED and e.eta_s is None for e in status.entities)
    assert status.to_json()["entities"][0]["liveness"] == "stalled"
    # A new runner (a restarted service) resumes the stopped job to an exact end.
    again = runner(MemoryConnector({"a": rows(200), "b": rows(200)}), store, dest)
    result = await (await again.resume("first")).wait()
    assert result.ok and result.outcomes() == {Outcome.COMPLETE}
    assert len(dest.rows("a")) == 200 and len(dest.rows("b")) == 200


async def test_a_running_job_id_answers_busy_with_its_holder(store: StateStore) -> None:
    r = runner(Slow({"a": rows(100)}, delay=0.02), store, MemoryDestination())
    handle = await r.start(["a"], job_id="nightly")
    await until(handle, lambda st: st.entity("a").records >= 10)
    other = runner(MemoryConnector({"a": rows(100)}), store, MemoryDestination())
    with pytest.raises(JobBusyError) as info:
        await other.sync(["a"], job_id="nightly")
    assert info.value.holders["a"][0] == r.owner
    status = await handle.status()
    holder = status.entity("a").holder
    assert holder is not None and holder.owner == r.owner
    assert status.entity("a").eta_s is not None  # live, with a total: an ETA
    handle.stop()
    await handle.wait()


async def test_one_job_id_three_instances_each_exact_and_readable(
    store: StateStore,
) -> None:
    dest = MemoryDestination()
    data = {"a": rows(30, "one")}
    conn = MemoryConnector(data)
    r = runner(conn, store, dest)
    first = await r.sync(["a"], job_id="nightly")
    conn.data["a"] = [*rows(45, "two")]
    second = await r.sync(["a"], job_id="nightly")
    conn.data["a"] = [*rows(45, "two")[:40], *rows(60, "three", month=2)[40:]]
    third = await r.sync(["a"], job_id="nightly", mode=SyncMode.INCREMENTAL)
    assert [first.instance, second.instance, third.instance] == [1, 2, 3]
    assert all(x.ok for x in (first, second, third))
    assert {x.job_id for x in (first, second, third)} == {"nightly", "nightly#2", "nightly#3"}
    assert {k: v["tag"] for k, v in dest.rows("a").items()} == {
        f"r{i:04d}": ("two" if i < 40 else "three") for i in range(60)
    }
    for number, records in ((1, 30), (2, 45)):
        old = await job_status(store, "nightly", instance=number)
        assert old.instance == number and old.entity("a").records == records
        assert old.entity("a").state is SyncState.COMPLETE
    assert third.entities[0].records == 20  # incremental: only what changed since the mark
    latest = await job_status(store, "nightly")
    assert latest.instance == 3 and latest.mode is SyncMode.INCREMENTAL
    with pytest.raises(UnknownJobError):
        await job_status(store, "nightly", instance=4)


async def test_recovered_entity_shows_no_current_error(store: StateStore) -> None:
    def flaky(_: Any, call: int) -> TransientError | None:
        return TransientError("HTTP 503") if call in (2, 3) else None

    r = runner(MemoryConnector({"a": rows(15)}, fault=flaky), store, MemoryDestination())
    result = await r.sync(["a"], job_id="j")
    assert result.ok and result.entities[0].error is None
    status = await job_status(store, "j")
    assert status.entity("a").last_error is None
    assert status.entity("a").records_per_s is not None
    history = await store.history("j", "a")
    assert [t.error.message for t in history if t.trigger == "retry_chunk" and t.error] == [
        "HTTP 503 (entity 'a')",
        "HTTP 503 (entity 'a')",
    ]


async def test_cancel_names_unknown_entities_and_jobs(store: StateStore) -> None:
    dest = MemoryDestination()
    r = runner(MemoryConnector({"a": rows(5)}), store, dest)
    await r.create_job(["a"], job_id="j")
    with pytest.raises(UnknownEntityError, match="nosuch"):
        await cancel_job(store, dest, "j", entities=["nosuch"])
    with pytest.raises(UnknownJobError):
        await cancel_job(store, dest, "nojob")
    done = await cancel_job(store, dest, "j")
    assert done.cancelled == ("a",)


async def test_two_connectors_same_entity_two_namespaces(store: StateStore) -> None:
    dest = MemoryDestination()
    shop = MemoryConnector({"orders": rows(25, "shop")})
    shop.name = "shop"
    crm = MemoryConnector({"orders": rows(40, "crm")})
    crm.name = "crm"
    # No namespace given anywhere: each job defaults to its connector's name.
    a = await runner(shop, store, dest, namespace=None).start(["orders"], job_id="shop-job")
    b = await runner(crm, store, dest, namespace=None).start(["orders"], job_id="crm-job")
    assert (await a.wait()).ok and (await b.wait()).ok
    assert (await store.get_job("shop-job")).params["namespace"] == default_namespace("shop")
    assert {v["tag"] for v in dest.rows("shop__orders").values()} == {"shop"}
    assert {v["tag"] for v in dest.rows("crm__orders").values()} == {"crm"}
    assert len(dest.rows("shop__orders")) == 25 and len(dest.rows("crm__orders")) == 40
    assert dest.rows("orders") == {}


async def test_shared_tables_on_request_and_for_jobs_stored_without_a_namespace(
    store: StateStore,
) -> None:
    dest = MemoryDestination()
    conn = MemoryConnector({"orders": rows(30)})
    shared = await runner(conn, store, dest, namespace="").start(["orders"], job_id="shared")
    assert (await shared.wait()).ok and len(dest.rows("orders")) == 30
    assert "namespace" not in (await store.get_job("shared")).params
    # A job an older release stored (no namespace param) keeps resolving to the shared
    # tables, whatever the runner resuming it would give a new job.
    now = datetime.now(UTC)
    spec = JobSpec("old", conn.name, ("orders",), SyncMode.FULL, {}, now)
    record = EntityRecord(
        job_id="old", entity="orders", mode=SyncMode.FULL, created_at=now, updated_at=now
    )
    await store.create_job(spec, [record])
    assert job_namespace(spec) is None
    conn.data["orders"] = [*rows(45, "old")]
    resumed = await runner(conn, store, dest, namespace=None).resume("old")
    assert (await resumed.wait()).ok
    assert {v["tag"] for v in dest.rows("orders").values()} == {"old"}
    assert len(dest.rows("orders")) == 45 and dest.rows("memory__orders") == {}


async def test_postgres_namespaces_are_schemas(
    postgres_dsn: str,
    pg_schema: str,
) -> None:
    from statesync.destinations.postgres import PostgresDestination
    from statesync.stores.memory import MemoryStateStore

    st, dest = MemoryStateStore(), PostgresDestination(postgres_dsn, schema=pg_schema)
    spaces = {"shop": f"{pg_schema}_shop", "crm": f"{pg_schema}_crm"}
    try:
        for name, size in (("shop", 25), ("crm", 40)):
            conn = MemoryConnector({"orders": rows(size, name)})
            conn.name = name
            handle = await runner(conn, st, dest).start(
                ["orders"], job_id=f"{name}-job", namespace=spaces[name]
            )
            assert (await handle.wait()).ok
        for name, size in (("shop", 25), ("crm", 40)):
            got = await dest.namespace(spaces[name]).rows("orders")
            assert len(got) == size and {v["tag"] for v in got.values()} == {name}
        assert await dest.rows("orders") == {}  # the job's own schema stays untouched
    finally:
        await dest.aclose()
        with psycopg.connect(postgres_dsn, autocommit=True) as pg:
            for schema in spaces.values():
                pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_gc_keeps_the_staging_of_a_namespaced_job(tmp_path: Any) -> None:
    from statesync import find_orphan_staging
    from statesync.destinations.sqlite import SQLiteDestination
    from statesync.stores.sqlite import SQLiteStateStore

    st, dest = SQLiteStateStore(tmp_path / "s.db"), SQLiteDestination(tmp_path / "d.db")
    r = runner(Slow({"orders": rows(100)}), st, dest)
    handle = await r.start(["orders"], job_id="ns-job", namespace="shop")
    await until(handle, lambda s: s.entity("orders").records >= 20)
    handle.stop()
    assert (await handle.wait()).interrupted
    staged = await dest.list_staging()
    assert [t.entity for t in staged] == ["shop__orders"]
    assert await find_orphan_staging(st, dest) == []  # its job is known: not an orphan
    resumed = await (
        await runner(MemoryConnector({"orders": rows(100)}), st, dest).resume("ns-job")
    ).wait()
    assert resumed.ok and len(dest.rows("shop__orders")) == 100
    await st.aclose()
    await dest.aclose()
