"""A FastAPI service built only on statesync's public API, driven over ASGI.

It starts two jobs, stops one, cancels the other, polls both statuses, then "restarts"
(new runner, store and destination objects, as a new process would build) and resumes
the stopped job to an exact end: against the sandbox, a real Redis and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from statesync import (
    ChunkPolicy,
    JobHandle,
    RetryPolicy,
    cancel_job,
    job_status,
)
from statesync.adapters.local import LocalRunner
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.postgres import PostgresDestination
from statesync.errors import JobBusyError, UnknownJobError
from statesync.sandbox import Sandbox, SandboxConfig
from statesync.stores.redis import RedisStateStore
from support.postgres import pg_schema, postgres_dsn  # noqa: F401 - fixtures

SIZES = {"customers": 60, "invoices": 40}


class StartJob(BaseModel):
    job_id: str
    entities: list[str]


def make_app(store_url: str, prefix: str, dsn: str, schema: str, sandbox: Sandbox) -> FastAPI:
    """The service: one runner, handles kept by job id."""
    store = RedisStateStore.from_url(store_url, prefix=prefix)
    destination = PostgresDestination(dsn, schema=schema)
    runner = LocalRunner(
        connector=StripeConnector(sandbox.config.api_key, base_url=sandbox.url),
        store=store,
        destination=destination,
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=5, lease_ttl=5),
        retry_policy=RetryPolicy(attempts=3, initial_delay=0.01),
        namespace="",  # the test's private schema, not a shared `stripe` one
    )
    handles: dict[str, JobHandle] = {}
    app = FastAPI()

    @app.post("/jobs", status_code=201)
    async def start(body: StartJob) -> dict[str, Any]:
        try:
            handle = await runner.start(body.entities, job_id=body.job_id)
        except JobBusyError as exc:
            raise HTTPException(409, {"busy": exc.holders}) from None
        handles[body.job_id] = handle
        return {"job_id": handle.job_id, "instance": handle.instance.number}

    @app.post("/jobs/{job_id}/resume", status_code=202)
    async def resume(job_id: str) -> dict[str, Any]:
        handles[job_id] = handle = await runner.resume(job_id)
        return {"job_id": job_id, "instance": handle.instance.number}

    @app.post("/jobs/{job_id}/stop")
    async def stop(job_id: str) -> dict[str, Any]:
        handle = handles[job_id]
        handle.stop()
        result = await handle.wait()
        return {"outcomes": {e.entity: e.outcome.value for e in result.entities}}

    @app.post("/jobs/{job_id}/cancel")
    async def cancel(job_id: str) -> dict[str, Any]:
        handle = handles.get(job_id)
        done = await (handle.cancel() if handle else cancel_job(store, destination, job_id))
        return {"cancelled": list(done.cancelled), "busy": list(done.busy)}

    @app.get("/jobs/{job_id}")
    async def status(job_id: str) -> dict[str, Any]:
        try:
            return (await job_status(store, job_id)).to_json()
        except UnknownJobError:
            raise HTTPException(404, f"no job {job_id}") from None

    async def aclose() -> None:
        for handle in handles.values():
            handle.stop()
            await asyncio.gather(handle.wait(), return_exceptions=True)
        await runner.connector.aclose()
        await destination.aclose()
        await store.aclose()

    app.state.aclose = aclose
    return app


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes=SIZES)) as running:
        running.faults.configure(latency=0.05)
        yield running


async def poll(client: httpx.AsyncClient, job_id: str, done: Any) -> dict[str, Any]:
    for _ in range(600):  # bounded: 30 s
        body: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if done(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there: {body}")


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


@pytest.mark.slow
async def test_a_service_starts_stops_cancels_polls_restarts_and_resumes(
    sandbox: Sandbox,
    redis_url: str,
    key_prefix: str,
    postgres_dsn: str,
    pg_schema: str,
) -> None:
    def new_app() -> FastAPI:
        return make_app(redis_url, key_prefix, postgres_dsn, pg_schema, sandbox)

    app = new_app()
    async with client_for(app) as client:
        for job, entities in (("a", ["customers", "invoices"]), ("b", ["customers"])):
            started = await client.post("/jobs", json={"job_id": job, "entities": entities})
            assert started.status_code == 201 and started.json()["instance"] == 1
        busy = await client.post("/jobs", json={"job_id": "a", "entities": ["customers"]})
        assert busy.status_code == 409
        await poll(client, "a", lambda s: s["entities"][0]["records"] >= 10)
        running = await poll(client, "b", lambda s: s["entities"][0]["liveness"] == "running")
        assert running["entities"][0]["holder"] is not None
        stopped = (await client.post("/jobs/a/stop")).json()["outcomes"]
        assert set(stopped.values()) == {"interrupted"}
        b = (await client.get("/jobs/b")).json()
        assert b["entities"][0]["liveness"] == "running"  # stopping a stopped only a
        assert (await client.post("/jobs/b/cancel")).json() == {
            "cancelled": ["customers"],
            "busy": [],
        }
        a = (await client.get("/jobs/a")).json()
        assert {e["liveness"] for e in a["entities"]} == {"stalled"}
        assert all(e["eta_s"] is None for e in a["entities"])
        b = (await client.get("/jobs/b")).json()
        assert b["entities"][0]["state"] == "cancelled" and b["finished"]
        assert (await client.get("/jobs/nosuch")).status_code == 404
    await app.state.aclose()

    sandbox.faults.configure(latency=0)
    app = new_app()  # a restarted service: nothing shared with the first but the servers
    async with client_for(app) as client:
        assert (await client.post("/jobs/a/resume")).status_code == 202
        done = await poll(client, "a", lambda s: s["finished"])
        assert {e["state"] for e in done["entities"]} == {"complete"}
        assert all(e["last_error"] is None for e in done["entities"])
    await app.state.aclose()

    with psycopg.connect(postgres_dsn) as conn:
        for entity in SIZES:
            rows = conn.execute(f'SELECT id FROM "{pg_schema}"."{entity}"').fetchall()
            assert sorted(r[0] for r in rows) == sorted(r["id"] for r in sandbox.snapshot(entity))
        staged = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE '_stg_%%'",
            (pg_schema,),
        ).fetchall()
        assert staged == []  # b's cancelled staging was dropped, a's swapped in
