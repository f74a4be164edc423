"""The Inngest adapter, driven over real HTTP by the test executor (``inngest_executor``).

The SDK handler is served with ``inngest.fast_api.serve`` on uvicorn; the executor plays
the Inngest server. The API is the emulator, the store Redis (or memory for the long
sync), the destination SQLite or memory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import inngest
import pytest

from statesync import ChunkPolicy, PolicySet, SyncState
from statesync.adapters.inngest import (
    MAX_CHUNKS_PER_RUN,
    job_instance,
    job_requested,
    sync_functions,
)
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import AuthError
from statesync.sandbox import FaultRule, Sandbox
from statesync.store import StateStore
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
from support.inngest_executor import Executor, serving

# Slow: whole syncs served over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow


def chunk_steps(ex: Executor, entity: str) -> list[str]:
    return [n for r in ex.runs for n in r.step_names if n.startswith(f"sync-{entity}-chunk-")]


async def test_thirty_chunks_run_as_one_step_each(
    sandbox: Sandbox, tmp_path: Path, redis_url: str, key_prefix: str, redis_store: StateStore
) -> None:
    db = tmp_path / "data.db"
    app_store = RedisStateStore.from_url(redis_url, prefix=key_prefix)
    make = functions(stripe(sandbox), app_store, SQLiteDestination(db))
    async with serving(make) as ex:
        await ex.send(job_requested("stripe", ["customers"], job_id="j30"))
        await ex.run_until_idle()
    assert chunk_steps(ex, "customers") == [f"sync-customers-chunk-{n}" for n in range(30)]
    assert all(a.outcome == "ok" for a in ex.attempts)
    assert ex.clock == 0  # no retry, and the job's wait never timed out
    assert_exact(sandbox, db, "customers")
    rec = await redis_store.get_entity("j30", "customers")
    assert rec.state is SyncState.COMPLETE and rec.chunk_index == 30
    summary = job_output(ex)
    assert [(e["entity"], e["state"]) for e in summary["entities"]] == [("customers", "complete")]


async def test_429_retries_after_the_servers_delay_and_completes(
    sandbox: Sandbox, tmp_path: Path, redis_url: str, key_prefix: str, redis_store: StateStore
) -> None:
    db = tmp_path / "data.db"
    # Chunks are one page each, so the 6th customers request is chunk 5's.
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/customers", nth=6, status=429, headers={"Retry-After": "7"})
    )
    make = functions(
        stripe(sandbox),
        RedisStateStore.from_url(redis_url, prefix=key_prefix),
        SQLiteDestination(db),
    )
    async with serving(make) as ex:
        await ex.send(job_requested("stripe", ["customers"], job_id="j429"))
        await ex.run_until_idle()
    tries = ex.attempts_of("sync-customers-chunk-5")
    assert [(a.attempt, a.outcome) for a in tries] == [(0, "retry"), (1, "ok")]
    assert tries[0].delay == pytest.approx(7, abs=0.2)  # Retry-After, not the policy's 2 s
    assert ex.clock == pytest.approx(7, abs=0.2)
    assert all(a.outcome == "ok" for a in ex.attempts if a.step != "sync-customers-chunk-5")
    assert_exact(sandbox, db, "customers")
    history = await redis_store.history("j429", "customers")
    retries = [t for t in history if t.trigger == "retry_chunk"]
    assert len(retries) == 1 and retries[0].chunk_index == 5
    assert retries[0].error is not None and retries[0].error.kind == "rate_limited"
    assert (await redis_store.get_entity("j429", "customers")).state is SyncState.COMPLETE


async def test_401_fails_the_entity_once_and_the_others_complete(
    sandbox: Sandbox, tmp_path: Path, redis_url: str, key_prefix: str, redis_store: StateStore
) -> None:
    db = tmp_path / "data.db"
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/customers", nth=3, status=401))
    make = functions(
        stripe(sandbox),
        RedisStateStore.from_url(redis_url, prefix=key_prefix),
        SQLiteDestination(db),
    )
    async with serving(make) as ex:
        await ex.send(job_requested("stripe", list(SIZES), job_id="j401"))
        await ex.run_until_idle()
    tries = ex.attempts_of("sync-customers-chunk-2")
    assert [(a.attempt, a.outcome) for a in tries] == [(0, "non_retriable")]
    rec = await redis_store.get_entity("j401", "customers")
    assert rec.state is SyncState.FAILED and rec.attempts == 1
    assert rec.last_error is not None and rec.last_error.kind == "auth"
    failed = [r for r in ex.runs_of("-entity") if r.status == "failed"]
    assert len(failed) == 1 and "failed in chunk 2" in failed[0].error["message"]
    assert len(ex.runs_of("-entity-failure")) == 1  # on_failure told the job
    assert ex.clock == 0  # the job learnt it from entity.finished, not a wait timeout
    for entity in ("invoices", "charges"):
        assert_exact(sandbox, db, entity)
    states = {e["entity"]: (e["state"], e["error"]) for e in job_output(ex)["entities"]}
    assert states["invoices"] == states["charges"] == ("complete", None)
    assert states["customers"][0] == "failed" and "auth" in states["customers"][1]


async def test_a_lost_step_response_neither_refetches_nor_skips(
    sandbox: Sandbox, tmp_path: Path, redis_url: str, key_prefix: str, redis_store: StateStore
) -> None:
    db = tmp_path / "data.db"
    make = functions(
        stripe(sandbox),
        RedisStateStore.from_url(redis_url, prefix=key_prefix),
        SQLiteDestination(db),
    )
    async with serving(make, response_lost={"sync-customers-chunk-3"}) as ex:
        await ex.send(job_requested("stripe", ["customers"], job_id="jlost"))
        await ex.run_until_idle()
    tries = ex.attempts_of("sync-customers-chunk-3")
    assert [(a.attempt, a.outcome) for a in tries] == [(0, "lost"), (1, "ok")]
    requests = [e for e in sandbox.log() if e.entity == "customers"]
    cursors = [e.query.get("starting_after") for e in requests]
    assert len(requests) == 30 and len(set(cursors)) == 30  # chunk 3 fetched once
    assert chunk_steps(ex, "customers") == [f"sync-customers-chunk-{n}" for n in range(30)]
    assert_exact(sandbox, db, "customers")
    rec = await redis_store.get_entity("jlost", "customers")
    assert rec.state is SyncState.COMPLETE and rec.api_calls == 30


async def test_a_1200_chunk_sync_spans_several_bounded_runs() -> None:
    connector = MemoryConnector({"items": rows(1200)}, updated_field=None)
    store, dest = MemoryStateStore(), MemoryDestination()
    make = functions(
        {"memory": lambda spec: connector},
        store,
        dest,
        policies=PolicySet(chunk=ChunkPolicy(max_iterations=1, page_size=1)),
        chunks_per_run=MAX_CHUNKS_PER_RUN,
    )
    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["items"], job_id="jlong"))
        await ex.run_until_idle(within=120)
    entity_runs = ex.runs_of("-entity")
    assert len(entity_runs) == 12 and all(r.status == "completed" for r in entity_runs)
    assert max(r.steps for r in ex.runs) == 102  # locate + 100 chunks + hand-over
    assert max(r.state_bytes for r in ex.runs) < 1024 * 1024
    assert len(chunk_steps(ex, "items")) == 1200 and connector.calls == 1200
    assert set(dest.rows("items")) == {r["id"] for r in rows(1200)}
    handovers = [e["id"] for e in ex.events if e["name"] == "statesync/entity.continue"]
    instance = job_instance(await store.get_job("jlong"))
    assert handovers == [f"{instance}/items/sync/{n}" for n in range(100, 1200, 100)]
    assert job_output(ex)["entities"][0]["state"] == "complete"


def overlaps(sandbox: Sandbox) -> int:
    """Pairs of API requests for different entities that were in flight together."""
    log = sorted(sandbox.log(), key=lambda e: e.started)
    return sum(
        1
        for i, a in enumerate(log)
        for b in log[i + 1 :]
        if b.started < a.ended and a.entity != b.entity
    )


@pytest.mark.parametrize("limit", [1, 3])
async def test_parallel_entities_respect_the_account_concurrency(
    sandbox: Sandbox, tmp_path: Path, limit: int
) -> None:
    sandbox.faults.configure(latency=0.01)
    db = tmp_path / "data.db"
    policies = PolicySet(chunk=ChunkPolicy(max_iterations=2, page_size=10))
    make = functions(
        stripe(sandbox),
        MemoryStateStore(),
        SQLiteDestination(db),
        policies=policies,
        account_concurrency=limit,
    )
    async with serving(make) as ex:
        await ex.send(job_requested("stripe", list(SIZES), job_id="jpar"))
        await ex.run_until_idle()
    assert {e["state"] for e in job_output(ex)["entities"]} == {"complete"}
    for entity in SIZES:
        assert_exact(sandbox, db, entity)
    order = [e.entity for e in sorted(sandbox.log(), key=lambda e: e.started)]
    if limit == 1:
        assert overlaps(sandbox) == 0
        # Not merely one after the other: the runs interleave step by step.
        assert order.index("invoices") < len(order) - 1 - order[::-1].index("customers")
    else:
        assert overlaps(sandbox) > 0  # the executor does run them concurrently


async def test_a_non_resumable_connector_runs_as_one_step() -> None:
    connector = MemoryConnector({"a": rows(95)}, updated_field=None, resumable=False)
    dest = MemoryDestination()
    make = functions({"memory": lambda spec: connector}, MemoryStateStore(), dest)
    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["a"], job_id="jflat"))
        await ex.run_until_idle()
    assert chunk_steps(ex, "a") == ["sync-a-chunk-0"]
    assert connector.calls == 10 and len(dest.rows("a")) == 95


async def test_a_repeated_request_runs_only_unfinished_entities() -> None:
    broken = {"on": True}
    connector = MemoryConnector(
        {"a": rows(30), "b": rows(20)},
        updated_field=None,
        fault=lambda req, n: AuthError("bad key") if broken["on"] and req.entity == "a" else None,
    )
    store = MemoryStateStore()
    make = functions({"memory": lambda spec: connector}, store, MemoryDestination())
    async with serving(make) as ex:
        await ex.send(job_requested("memory", ["a", "b"], job_id="jre"))
        await ex.run_until_idle()
        assert {e["entity"]: e["state"] for e in job_output(ex)["entities"]} == {
            "a": "failed",
            "b": "complete",
        }
        broken["on"] = False
        await ex.send(job_requested("memory", ["a", "b"], job_id="jre", retry_failed=True))
        await ex.run_until_idle()
    second = ex.runs_of("-job")[1]
    assert {e["entity"]: e["state"] for e in second.output["entities"]} == {
        "a": "complete",
        "b": "complete",
    }
    assert [r.event["data"]["entity"] for r in ex.runs_of("-entity")] == ["a", "b", "a"]


def test_unknown_connectors_fail_without_retry_under_the_mocked_runner() -> None:
    from inngest.experimental import mocked

    client = mocked.Inngest(app_id="mocked", is_production=False)
    fns = sync_functions(
        client, connectors={}, store=MemoryStateStore(), destination=MemoryDestination()
    )
    job = next(f for f in fns if f.id.endswith("-job"))
    loop = asyncio.new_event_loop()  # mocked.trigger runs on the current loop; close it after
    asyncio.set_event_loop(loop)
    try:
        result = mocked.trigger(job, job_requested("nope", ["a"]), client)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert result.status is mocked.Status.FAILED
    assert isinstance(result.error, inngest.NonRetriableError)
    assert "no connector 'nope'" in str(result.error)
