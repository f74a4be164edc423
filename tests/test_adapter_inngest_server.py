"""The Inngest adapter against what the real server does that a tidy executor would not.

Duplicate job requests, a step delivered twice at once, names CEL must quote, the
1,000-step and 256 KiB limits, Retry-After clamps, failure handlers started by
``inngest/function.failed``, event ids dropped for 24 hours. Served over real HTTP as in
``test_adapter_inngest``; the waits are evaluated with cel-python.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import inngest
import pytest

from statesync import ChunkPolicy, EntityRecord, JobSpec, PolicySet, RetryPolicy, SyncMode
from statesync.adapters._inngest_model import literal, retry_after
from statesync.adapters.inngest import (
    MAX_CHUNKS_PER_RUN,
    MAX_ENTITIES_PER_RUN,
    job_instance,
    job_requested,
    sync_functions,
    wait_expression,
)
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import ConfigurationError
from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from statesync.stores.redis import RedisStateStore
from support.inngest_app import (  # noqa: F401 - sandbox, redis_store: fixtures
    SIZES,
    assert_exact,
    functions,
    job_output,
    redis_store,
    rows,
    sandbox,
    stripe,
)
from support.inngest_executor import Cel, ExecutorError, Run, serving
from support.redis_server import RedisServer

# Slow: whole syncs served over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow


@pytest.fixture
def slow_sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes=SIZES)) as running:
        running.faults.configure(latency=0.02)
        yield running


def pages_fetched_once(sandbox: Sandbox, entity: str) -> int:
    requests = [e for e in sandbox.log() if e.entity == entity]
    cursors = [e.query.get("starting_after") for e in requests]
    assert len(cursors) == len(set(cursors)), f"{entity}: a page was fetched twice"
    return len(requests)


@pytest.mark.parametrize("copies", [2, 3])
async def test_duplicate_job_requests_share_one_chain_per_entity(
    slow_sandbox: Sandbox, tmp_path: Path, redis_url: str, key_prefix: str, copies: int
) -> None:
    db = tmp_path / "data.db"
    store = RedisStateStore.from_url(redis_url, prefix=key_prefix)
    make = functions(stripe(slow_sandbox), store, SQLiteDestination(db))
    rng = random.Random(copies)
    async with serving(make) as ex:
        for _ in range(copies):
            # Distinct event ids (a double click, a retried cron): Inngest starts each.
            await ex.send(job_requested("stripe", list(SIZES), job_id="jdup"))
            await asyncio.sleep(rng.uniform(0.0, 0.4))
        await ex.run_until_idle(within=120)
    jobs = ex.runs_of("-job")
    assert len(jobs) == copies and all(j.status == "completed" for j in jobs)
    for job in jobs:
        assert {e["entity"]: e["state"] for e in job.output["entities"]} == dict.fromkeys(
            SIZES, "complete"
        )
    assert ex.clock < 3600  # every job run learnt the end from an event, not a timeout
    for entity in SIZES:
        assert_exact(slow_sandbox, db, entity)
        assert pages_fetched_once(slow_sandbox, entity) == -(-SIZES[entity] // 10)
    starts = [(r.event["data"]["entity"], r.event["data"]["start"]) for r in ex.runs_of("-entity")]
    assert len(starts) == len(set(starts))  # one chain per entity, however many requests
    assert not [r for r in ex.runs_of("-entity") if r.status == "failed"]
    ids = [e["id"] for e in ex.events if e["name"] == "statesync/entity.sync"]
    # Every request's fan-out used the one id per entity; the copies were dropped.
    assert len(set(ids)) == len(SIZES) < len(ids)


async def test_a_step_delivered_twice_at_once_fetches_each_page_once(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_store: RedisStateStore
) -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 100})) as sandbox:
        sandbox.faults.configure(latency=0.3)
        db = tmp_path / "data.db"
        store = RedisStateStore.from_url(redis_url, prefix=key_prefix)
        make = functions(stripe(sandbox), store, SQLiteDestination(db))
        async with serving(make, redeliver={"sync-customers-chunk-3"}) as ex:
            await ex.send(job_requested("stripe", ["customers"], job_id="jtwice"))
            await ex.run_until_idle(within=120)
        tries = ex.attempts_of("sync-customers-chunk-3")
        outcomes = [a.outcome for a in tries]
        assert outcomes == ["lost", "retry", "ok"], tries
        assert "another delivery holds the lease" in tries[1].detail
        assert tries[1].delay is not None and tries[1].delay >= 1
        assert pages_fetched_once(sandbox, "customers") == 10
        assert_exact(sandbox, db, "customers")
        rec = await redis_store.get_entity("jtwice", "customers")
        assert rec.api_calls == 10 and rec.state.value == "complete"
        assert job_output(ex)["entities"][0]["state"] == "complete"


WEIRD_JOB = "j\U0001f600 \"quoted\" \\ 'single'"
# Entity names become table names (identifiers); their waits are checked directly below.
WEIRD = {"invoices": 30, "charges": 20}
WEIRD_ENTITY = "\U0001f9fe \"inv\" caf\u00e9 \U0001f468\u200d\U0001f469 'x' \\"


async def test_emoji_and_quotes_in_ids_make_waits_cel_evaluates(
    redis_url: str, key_prefix: str, redis_store: RedisStateStore
) -> None:
    connector = MemoryConnector({name: rows(n) for name, n in WEIRD.items()}, updated_field=None)
    store = RedisStateStore.from_url(redis_url, prefix=key_prefix)
    dest = MemoryDestination()
    policies = PolicySet(chunk=ChunkPolicy(max_iterations=1, page_size=10))
    make = functions({"memory": lambda spec: connector}, store, dest, policies=policies)
    async with serving(make) as ex:
        await ex.send(job_requested("memory", list(WEIRD), job_id=WEIRD_JOB))
        await ex.run_until_idle()
    assert {e["entity"]: e["state"] for e in job_output(ex)["entities"]} == dict.fromkeys(
        WEIRD, "complete"
    )
    assert ex.clock == 0  # the CEL waits matched their events; none timed out
    for name, n in WEIRD.items():
        assert len(dest.rows(name)) == n

    instance = job_instance(await redis_store.get_job(WEIRD_JOB))
    entity = WEIRD_ENTITY
    expr = wait_expression(instance, entity)
    assert expr.isascii()
    data = {"instance": instance, "entity": entity, "job_id": WEIRD_JOB}
    cel = Cel()
    assert cel.true(expr, {"async": {"data": {**data, "state": "complete"}}})
    assert not cel.true(expr, {"async": {"data": {**data, "state": "fetching"}}})
    assert not cel.true(expr, {"async": {"data": {**data, "entity": "other", "state": "failed"}}})
    with pytest.raises(ExecutorError, match="surrogate"):
        cel.true(f"async.data.entity == {json.dumps(entity)}", {"async": {}})
    with pytest.raises(ValueError, match="lone surrogate"):
        literal("\ud83d")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("chunks_per_run", 0),
        ("chunks_per_run", MAX_CHUNKS_PER_RUN + 1),
        ("chunks_per_run", True),
        ("chunks_per_run", "5"),
        ("entities_per_run", 0),
        ("entities_per_run", MAX_ENTITIES_PER_RUN + 1),
        ("account_concurrency", 0),
        ("account_concurrency", -2),
        ("account_concurrency", 1.5),
        ("wait_timeout", timedelta(0)),
        ("wait_timeout", timedelta(days=366)),
        ("wait_timeout", 3600),
        ("event_prefix", ""),
        ("event_prefix", "has space"),
        ("event_prefix", "a/b"),
        ("connectors", {"memory": "not a factory"}),
        ("policies", PolicySet(retry=RetryPolicy(attempts=30))),
    ],
)
def test_every_bad_setting_is_refused_at_registration(setting: str, value: Any) -> None:
    client = inngest.Inngest(app_id="bad-settings", is_production=False)
    kw: dict[str, Any] = {
        "connectors": {},
        "store": MemoryStateStore(),
        "destination": MemoryDestination(),
        setting: value,
    }
    with pytest.raises(ConfigurationError, match=setting):
        sync_functions(client, **kw)


def test_good_edge_settings_register() -> None:
    client = inngest.Inngest(app_id="edge-settings", is_production=False)
    fns = sync_functions(
        client,
        connectors={},
        store=MemoryStateStore(),
        destination=MemoryDestination(),
        chunks_per_run=MAX_CHUNKS_PER_RUN,
        account_concurrency=None,
        wait_timeout=timedelta(days=7),
        entities_per_run=MAX_ENTITIES_PER_RUN,
    )
    entity = next(f for f in fns if f.id.endswith("-entity")).get_config("http://x").main
    assert entity.concurrency is None
    assert retry_after(0) == timedelta(seconds=1)
    assert retry_after(10**9) == timedelta(hours=24)


async def test_a_job_larger_than_one_run_fans_out_batches() -> None:
    names = [f"e{i}" for i in range(5)]
    connector = MemoryConnector({n: rows(12) for n in names}, updated_field=None)
    dest = MemoryDestination()
    policies = PolicySet(chunk=ChunkPolicy(max_iterations=1, page_size=5))
    make = functions(
        {"memory": lambda spec: connector},
        MemoryStateStore(),
        dest,
        policies=policies,
        entities_per_run=2,
    )
    async with serving(make) as ex:
        await ex.send(job_requested("memory", names, job_id="jbig"))
        await ex.run_until_idle()
    parent, *batches = ex.runs_of("-job")
    assert parent.event["name"] == "statesync/job.requested"
    assert [b.event["data"]["batch"] for b in batches] == [0, 1, 2]
    assert all(b.status == "completed" for b in batches)
    assert parent.steps == 1 + 3 + 1 + 1  # plan, a wait per batch, fan-out, summary
    assert max(b.steps for b in batches) == 1 + 2 + 1 + 1  # plan, 2 waits, fan-out, announce
    assert [e["state"] for e in job_output_of(parent)["entities"]] == ["complete"] * 5
    assert ex.clock == 0
    assert all(len(dest.rows(n)) == 12 for n in names)


def job_output_of(run: Any) -> dict[str, Any]:
    assert run.status == "completed", run.error
    out: dict[str, Any] = run.output
    return out


async def test_an_oversized_event_is_refused_before_it_is_sent() -> None:
    job_id = "j" * (100 * 1024)  # fits a request; the fan-out carries it three times
    connector = MemoryConnector({"a": rows(3)}, updated_field=None)
    make = functions({"memory": lambda spec: connector}, MemoryStateStore(), MemoryDestination())
    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["a"], job_id=job_id))
        await ex.run_until_idle()
    (job,) = ex.runs_of("-job")
    assert job.status == "failed"
    assert "Inngest accepts at most 262144" in job.error["message"]
    assert ex.violations == []  # the executor's event API never saw it
    assert connector.calls == 0
    with pytest.raises(ConfigurationError, match="262144"):
        job_requested("memory", [f"e{i:06d}" for i in range(30_000)])


async def test_retry_after_zero_is_raised_to_the_servers_second(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/invoices", nth=2, status=429, headers={"Retry-After": "0"})
    )
    # The policy's own delay is below Inngest's 1 s too: the adapter raises both to it.
    fast = PolicySet(
        retry=RetryPolicy(attempts=5, initial_delay=0.05, jitter=0),
        chunk=ChunkPolicy(max_iterations=1, page_size=10),
    )
    db = SQLiteDestination(tmp_path / "d.db")
    make = functions(stripe(sandbox), MemoryStateStore(), db, policies=fast)
    async with serving(make) as ex:
        await ex.send(job_requested("stripe", ["invoices"], job_id="jclamp"))
        await ex.run_until_idle()
    (retry,) = [a for a in ex.attempts if a.outcome == "retry"]
    assert retry.step == "sync-invoices-chunk-1" and retry.delay == 1.0
    assert job_output(ex)["entities"][0]["state"] == "complete"


async def test_a_run_that_fails_mid_sync_does_not_announce_a_running_state() -> None:
    store = MemoryStateStore()
    now = datetime.now(UTC)
    await store.create_job(
        JobSpec("jheld", "memory", ("a",), created_at=now),
        [EntityRecord(job_id="jheld", entity="a", mode=SyncMode.FULL, created_at=now)],
    )
    # Someone else holds the entity for the whole test: every delivery conflicts.
    assert await store.acquire_lease("jheld", "a", "outsider", 10**7) is not None
    connector = MemoryConnector({"a": rows(5)}, updated_field=None)
    timeout = timedelta(hours=30)
    make = functions(
        {"memory": lambda spec: connector}, store, MemoryDestination(), wait_timeout=timeout
    )
    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["a"], job_id="jheld"))
        await ex.run_until_idle()
    (entity,) = ex.runs_of("-entity")
    assert entity.status == "failed"
    conflicts = ex.attempts_of("sync-a-chunk-0")
    assert len(conflicts) == 21 and all("holds the lease" in a.detail for a in conflicts)
    assert connector.calls == 0  # a conflict fetches nothing
    (failure,) = ex.runs_of("-entity-failure")  # started by inngest/function.failed
    assert failure.event["name"] == "inngest/function.failed"
    assert failure.output == {"announced": False, "state": "pending"}
    assert not [e for e in ex.events if e["name"] == "statesync/entity.finished"]
    assert ex.clock >= timeout.total_seconds()  # the job run waited until its timeout
    assert job_output(ex)["entities"][0]["state"] == "pending"


async def test_a_repeated_event_id_is_dropped_for_24_hours() -> None:
    connector = MemoryConnector({"a": rows(3)}, updated_field=None)
    make = functions({"memory": lambda spec: connector}, MemoryStateStore(), MemoryDestination())
    request = job_requested("memory", ["a"], job_id="jonce")
    request.id = "cron-tick-1"
    async with serving(make) as ex:
        await ex.send(request)
        await ex.run_until_idle()
        await ex.send(request)
        await ex.run_until_idle()
        assert len(ex.runs_of("-job")) == 1
        ex.clock += 24 * 3600
        await ex.send(request)
        await ex.run_until_idle()
    jobs = ex.runs_of("-job")
    assert [j.output["job_id"] for j in jobs] == ["jonce", "jonce#2"]
    # The job had finished: the request accepted again runs its next instance, once.
    instances = [r.event["data"]["instance"] for r in ex.runs_of("-entity")]
    assert len(instances) == len(set(instances)) == 2


async def test_a_copy_of_an_entity_event_under_another_id_starts_nothing() -> None:
    connector = MemoryConnector({"a": rows(3)}, updated_field=None)
    make = functions({"memory": lambda spec: connector}, MemoryStateStore(), MemoryDestination())
    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["a"], job_id="jcopy"))
        await ex.run_until_idle()
        (sync,) = [e for e in ex.events if e["name"] == "statesync/entity.sync"]
        await ex.send({"name": sync["name"], "data": sync["data"], "id": "hand-made"})
        await ex.run_until_idle()
    assert len(ex.runs_of("-entity")) == 1  # the idempotency key (instance, entity, start)
    assert connector.calls == 1


def test_the_failure_handler_is_its_own_function_with_retries() -> None:
    client = inngest.Inngest(app_id="failure-cfg", is_production=False)
    fns = sync_functions(
        client, connectors={}, store=MemoryStateStore(), destination=MemoryDestination()
    )
    config = next(f for f in fns if f.id.endswith("-entity-failure")).get_config("http://x")
    main = config.main
    assert main.steps["step"].retries is not None and main.steps["step"].retries.attempts == 4
    (trigger,) = main.triggers
    assert isinstance(trigger, inngest.TriggerEvent)
    assert trigger.event == "inngest/function.failed"
    assert Cel().true(
        trigger.expression, {"event": {"data": {"function_id": "failure-cfg-statesync-entity"}}}
    )
    assert not Cel().true(
        trigger.expression, {"event": {"data": {"function_id": "failure-cfg-statesync-job"}}}
    )


async def test_the_failure_handler_rides_out_a_store_outage(
    sandbox: Sandbox, tmp_path: Path, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server("--appendonly", "yes", "--appendfsync", "always")
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=1, status=401))
    store = RedisStateStore.from_url(server.url, prefix="outage")

    async def outage(run: Run) -> None:
        # The store goes away just as the failure handler first reads it, and comes back
        # for the handler's retry.
        if run.fn.id.endswith("-entity-failure"):
            if run.requests == 0:
                await asyncio.to_thread(server.stop)
            elif server.proc is None:
                await asyncio.to_thread(server.start)

    make = functions(stripe(sandbox), store, SQLiteDestination(tmp_path / "d.db"))
    async with serving(make, before_call=outage) as ex:
        await ex.send(job_requested("stripe", ["invoices"], job_id="joutage"))
        await ex.run_until_idle()
    (failure,) = ex.runs_of("-entity-failure")
    reads = [a.outcome for a in ex.attempts if a.run_id == failure.id]
    assert reads[0] in ("error", "retry") and reads[-1] == "ok", ex.attempts
    assert failure.output == {"announced": True, "state": "failed"}
    assert ex.clock < 3600  # the job learnt it from the announcement, not its timeout
    assert job_output(ex)["entities"][0]["state"] == "failed"
