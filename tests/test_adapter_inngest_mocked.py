"""The adapter's main scenarios under ``inngest.experimental.mocked``, the SDK's own harness.

The harness runs one function at a time with the SDK's own step machinery; events the
functions send are recorded by the harness's client and delivered here by hand, so the
chain (job, entity runs, hand-overs, a duplicate delivery) is driven as Inngest would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import inngest
import pytest
from inngest.experimental import mocked

from statesync import ChunkPolicy, PolicySet, SyncState
from statesync.adapters.inngest import StepConflictError, job_requested, sync_functions
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.stores.memory import MemoryStateStore
from support.namespace import table


class Recording(mocked.Inngest):
    """The harness's client, keeping what the functions send."""

    sent: list[inngest.Event]

    async def send(self, events: Any, *, skip_middleware: bool = False) -> list[str]:
        batch = events if isinstance(events, list) else [events]
        self.sent.extend(batch)
        return await super().send(batch, skip_middleware=skip_middleware)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """mocked.trigger runs on the current loop; one loop for the whole test."""
    running = asyncio.new_event_loop()
    asyncio.set_event_loop(running)
    yield running
    asyncio.set_event_loop(None)
    running.close()


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:04d}"} for i in range(n)]


class App:
    def __init__(self, data: dict[str, list[dict[str, Any]]], **kw: Any) -> None:
        self.client = Recording(app_id="mocked", is_production=False)
        self.client.sent = []
        self.connector = MemoryConnector(data, updated_field=None)
        self.store, self.dest = MemoryStateStore(), MemoryDestination()
        fns = sync_functions(
            self.client,
            connectors={"memory": lambda spec: self.connector},
            store=self.store,
            destination=self.dest,
            policies=PolicySet(chunk=ChunkPolicy(max_iterations=1, page_size=5)),
            **kw,
        )
        self.fns = {f.id.removeprefix("mocked-statesync-"): f for f in fns}

    def trigger(self, fn: str, event: inngest.Event, **stubs: object) -> Any:
        return mocked.trigger(self.fns[fn], event, self.client, step_stubs=stubs)

    def take(self, name: str) -> list[inngest.Event]:
        picked = [e for e in self.client.sent if e.name == f"statesync/{name}"]
        self.client.sent = [e for e in self.client.sent if e not in picked]
        return picked


def test_a_job_runs_through_its_chain_under_the_sdk_harness(
    loop: asyncio.AbstractEventLoop,
) -> None:
    app = App({"a": rows(23), "b": rows(4)}, chunks_per_run=2)
    request = job_requested("memory", ["a", "b"], job_id="jm")
    waits = {"wait-a": mocked.Timeout, "wait-b": mocked.Timeout}
    first = app.trigger("job", request, **waits)
    assert first.status is mocked.Status.COMPLETED
    assert [e["state"] for e in first.output["entities"]] == ["pending", "pending"]
    queue = app.take("entity.sync")
    assert [e.data["entity"] for e in queue] == ["a", "b"]
    assert all(e.id == f"{e.data['instance']}/{e.data['entity']}/sync/0" for e in queue)
    instance = queue[0].data["instance"]
    runs = 0
    while queue:
        result = app.trigger("entity", queue.pop(0))
        assert result.status is mocked.Status.COMPLETED, result.error
        runs += 1
        queue += app.take("entity.continue")
    assert runs == 3 + 1  # a: 5 one-page chunks, 2 per run; b: one chunk
    assert app.connector.calls == 5 + 1
    assert sorted(app.dest.rows(table("a", "memory"))) == [r["id"] for r in rows(23)]
    finished = app.take("entity.finished")
    assert sorted((e.data["entity"], e.data["state"]) for e in finished) == [
        ("a", "complete"),
        ("b", "complete"),
    ]
    # The same request after the job finished: its next instance, a chain of its own.
    again = app.trigger("job", request, **waits)
    assert again.output["job_id"] == "jm#2"
    assert [e["state"] for e in again.output["entities"]] == ["pending", "pending"]
    second = app.take("entity.sync")
    assert [e.data["entity"] for e in second] == ["a", "b"]
    assert instance not in {e.data["instance"] for e in second}


def test_a_repeated_entity_event_fetches_nothing(loop: asyncio.AbstractEventLoop) -> None:
    app = App({"a": rows(7)})
    app.trigger("job", job_requested("memory", ["a"], job_id="jr"), **{"wait-a": mocked.Timeout})
    (sync,) = app.take("entity.sync")
    assert app.trigger("entity", sync).status is mocked.Status.COMPLETED
    calls = app.connector.calls
    repeat = app.trigger("entity", sync)
    assert repeat.status is mocked.Status.COMPLETED
    assert repeat.output["state"] == "complete" and app.connector.calls == calls


def test_a_held_lease_is_a_conflict_before_any_request(loop: asyncio.AbstractEventLoop) -> None:
    app = App({"a": rows(7)})
    app.trigger("job", job_requested("memory", ["a"], job_id="jl"), **{"wait-a": mocked.Timeout})
    (sync,) = app.take("entity.sync")
    held = loop.run_until_complete(app.store.acquire_lease("jl", "a", "other-delivery", 600))
    assert held is not None
    result = app.trigger("entity", sync)
    assert result.status is mocked.Status.FAILED
    assert isinstance(result.error, StepConflictError)
    assert app.connector.calls == 0
    rec = loop.run_until_complete(app.store.get_entity("jl", "a"))
    assert rec.state is SyncState.PENDING and rec.attempts == 0


def test_the_failure_handler_announces_only_a_final_state(
    loop: asyncio.AbstractEventLoop,
) -> None:
    app = App({"a": rows(7)})
    app.trigger("job", job_requested("memory", ["a"], job_id="jf"), **{"wait-a": mocked.Timeout})
    (sync,) = app.take("entity.sync")
    failed = inngest.Event(
        name="inngest/function.failed",
        data={"event": {"name": sync.name, "data": sync.data}, "run_id": "r1", "error": {}},
    )
    quiet = app.trigger("entity-failure", failed)
    assert quiet.output == {"announced": False, "state": "pending"}
    assert app.take("entity.finished") == []
    app.trigger("entity", sync)
    app.take("entity.finished")
    loud = app.trigger("entity-failure", failed)
    assert loud.output == {"announced": True, "state": "complete"}
    assert [e.data["state"] for e in app.take("entity.finished")] == ["complete"]
