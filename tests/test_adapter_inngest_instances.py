"""The Inngest adapter's recurring job ids and destination namespaces (issue 11, items 3-4).

Driven over real HTTP by the project's test executor, against the emulator, real Redis
and SQLite: a job id requested again after its last instance finished starts the next
instance; duplicates of one request collapse into one chain; each connector writes
into its own namespace.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import inngest
import pytest

from statesync import (
    EntityRecord,
    JobSpec,
    SyncMode,
    SyncState,
    job_status,
)
from statesync._namespace import job_namespace
from statesync.adapters.inngest import job_instance, job_requested, sync_functions
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import ConfigurationError
from statesync.sandbox import Sandbox, SandboxConfig
from statesync.store import StateStore
from statesync.stores.redis import RedisStateStore
from support.inngest_app import assert_exact, functions, live_ids, stripe, stripe_at
from support.inngest_executor import Executor, serving
from support.namespace import table


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"customers": 40})) as running:
        yield running


@pytest.fixture
def app_store(redis_url: str, key_prefix: str) -> RedisStateStore:
    """The app's store: it lives (and its connections die) on the server's loop."""
    return RedisStateStore.from_url(redis_url, prefix=key_prefix)


@pytest.fixture
async def own_store(redis_url: str, key_prefix: str) -> AsyncIterator[RedisStateStore]:
    """The test's own view of the app's store (the app's lives on the server loop)."""
    store = RedisStateStore.from_url(redis_url, prefix=key_prefix)
    yield store
    await store.aclose()


def completed_chunks(ex: Executor) -> list[str]:
    return [
        a.step
        for a in ex.attempts
        if a.step.startswith("sync-customers-chunk-") and a.outcome == "ok"
    ]


async def test_a_job_id_requested_three_times_runs_three_exact_instances(
    sandbox: Sandbox, tmp_path: Path, app_store: StateStore, own_store: StateStore
) -> None:
    db = tmp_path / "data.db"
    make = functions(stripe(sandbox), app_store, SQLiteDestination(db))
    counts = []
    async with serving(make) as ex:
        for night in range(3):
            if night:
                sandbox.insert("customers", 7)  # new records since the last night
            await ex.send(job_requested("stripe", ["customers"], job_id="nightly"))
            await ex.run_until_idle()
            counts.append(len(sandbox.snapshot("customers")))
            assert_exact(sandbox, db, "customers")  # each instance ends exact
    jobs = ex.runs_of("-job")
    assert [j.status for j in jobs] == ["completed"] * 3
    assert [j.output["job_id"] for j in jobs] == ["nightly", "nightly#2", "nightly#3"]
    for number, count in enumerate(counts, start=1):
        status = await job_status(own_store, "nightly", instance=number)
        assert (status.instance, status.store_id) == (number, jobs[number - 1].output["job_id"])
        (entity,) = status.entities
        assert (entity.state, entity.records) == (SyncState.COMPLETE, count)
    assert (await job_status(own_store, "nightly")).instance == 3  # the latest by default
    # Each instance had its own chain: event ids carry the instance, so none was dropped.
    instances = {r.event["data"]["instance"] for r in ex.runs_of("-entity")}
    specs = [await own_store.get_job(j.output["job_id"]) for j in jobs]
    assert instances == {job_instance(spec) for spec in specs}
    assert len(completed_chunks(ex)) == sum(-(-c // 10) for c in counts)


async def test_duplicates_of_one_request_share_one_instance_and_later_ones_start_the_next(
    sandbox: Sandbox, tmp_path: Path, app_store: StateStore, own_store: StateStore
) -> None:
    db = tmp_path / "data.db"
    sandbox.faults.configure(latency=0.02)  # long enough for the copies to meet it running
    make = functions(stripe(sandbox), app_store, SQLiteDestination(db))
    async with serving(make) as ex:
        for _ in range(3):  # a double click: distinct event ids, one job
            await ex.send(job_requested("stripe", ["customers"], job_id="dup"))
        await ex.run_until_idle()
        assert {j.output["job_id"] for j in ex.runs_of("-job")} == {"dup"}
        assert len(completed_chunks(ex)) == 4  # one chain: 40 records, 10 a chunk
        await ex.send(job_requested("stripe", ["customers"], job_id="dup"))
        await ex.run_until_idle()
    assert [j.output["job_id"] for j in ex.runs_of("-job")][3] == "dup#2"
    assert len(completed_chunks(ex)) == 8
    assert_exact(sandbox, db, "customers")
    for number in (1, 2):
        (entity,) = (await job_status(own_store, "dup", instance=number)).entities
        assert (entity.state, entity.records) == (SyncState.COMPLETE, 40)


async def test_two_connectors_with_one_entity_name_write_two_exact_tables(
    sandbox: Sandbox, tmp_path: Path, app_store: StateStore, own_store: StateStore
) -> None:
    db = tmp_path / "data.db"
    with Sandbox(SandboxConfig(sizes={"customers": 25}, seed=7)) as other:
        connectors = {"stripe": stripe_at(sandbox), "billing": stripe_at(other)}
        dest = SQLiteDestination(db)
        # billing: the default namespace
        make = functions(connectors, app_store, dest, namespaces={"stripe": "shop"})
        async with serving(make) as ex:
            await ex.send(job_requested("stripe", ["customers"], job_id="a"))
            await ex.send(job_requested("billing", ["customers"], job_id="b"))
            await ex.run_until_idle()
        assert_exact(sandbox, db, "customers", "shop__customers")
        assert_exact(other, db, "customers", table("customers", "billing"))  # billing__customers
    assert set(live_ids(db, "shop__customers")) != set(live_ids(db, "billing__customers"))
    assert (await own_store.get_job("a")).params["namespace"] == "shop"
    assert (await own_store.get_job("b")).params["namespace"] == "billing"


async def test_a_job_stored_without_a_namespace_keeps_the_shared_tables(
    sandbox: Sandbox, tmp_path: Path, app_store: StateStore, own_store: StateStore
) -> None:
    """A job an older release created (no namespace param) resumes into the shared tables."""
    db = tmp_path / "data.db"
    now = datetime.now(UTC)
    spec = JobSpec("old", "stripe", ("customers",), SyncMode.FULL, {}, now)
    record = EntityRecord(
        job_id="old", entity="customers", mode=SyncMode.FULL, created_at=now, updated_at=now
    )
    await own_store.create_job(spec, [record])
    assert job_namespace(spec) is None
    make = functions(stripe(sandbox), app_store, SQLiteDestination(db), namespaces=None)
    async with serving(make) as ex:
        await ex.send(job_requested("stripe", ["customers"], job_id="old"))
        await ex.run_until_idle()
    assert [j.output["job_id"] for j in ex.runs_of("-job")] == ["old"]  # resumed, not new
    assert_exact(sandbox, db, "customers")
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert table("customers") not in names


@pytest.mark.parametrize(
    ("namespaces", "names"),
    [({"nosuch": "x"}, "nosuch"), ({"stripe": "a__b"}, "namespaces['stripe']"), ("1x", "1x")],
)
def test_bad_namespaces_are_refused_at_registration(namespaces: Any, names: str) -> None:
    client = inngest.Inngest(app_id="ns", is_production=False)
    with pytest.raises(ConfigurationError, match=re.escape(names)):
        sync_functions(
            client,
            connectors={"stripe": lambda spec: StripeConnector("sk_test", base_url="http://x")},
            store=RedisStateStore.from_url("redis://127.0.0.1:6379"),
            destination=SQLiteDestination(":memory:"),
            namespaces=namespaces,
        )
