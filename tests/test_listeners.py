"""Observability hooks: listeners see every transition, in order; logs are structured."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from statesync import (
    ChunkPolicy,
    LoggingListener,
    PageRequest,
    RetryPolicy,
    TransitionRecord,
    redact,
)
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.errors import ConnectorError, TransientError
from statesync.events import (
    ChunkFinished,
    Event,
    JobFinished,
    PageWritten,
    RetryScheduled,
    TransitionEvent,
)
from statesync.stores.memory import MemoryStateStore


class Recorder:
    """The few lines a user writes for a metrics exporter."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def flaky(req: PageRequest, call: int) -> ConnectorError | None:
    return TransientError("HTTP 503 from sk_test_abcdefghijkl") if call == 4 else None


async def test_a_listener_receives_every_transition_in_order() -> None:
    rows = {"a": [{"id": f"a{i}"} for i in range(45)], "b": [{"id": f"b{i}"} for i in range(5)]}
    recorder = Recorder()
    store = MemoryStateStore()
    runner = LocalRunner(
        connector=MemoryConnector(rows, fault=flaky),
        store=store,
        destination=MemoryDestination(),
        chunk_policy=ChunkPolicy(2, 10),
        retry_policy=RetryPolicy(attempts=3, initial_delay=0.001),
        listeners=[recorder],
    )
    result = await runner.sync(["a", "b"])
    assert result.ok
    for entity in ("a", "b"):
        seen = [e for e in recorder.events if isinstance(e, TransitionEvent) and e.entity == entity]
        stored: list[TransitionRecord] = list(await store.history(result.job_id, entity))
        assert [(e.trigger, e.source, e.dest) for e in seen] == [
            (t.trigger, t.source, t.dest) for t in stored
        ]
    assert any(isinstance(e, RetryScheduled) for e in recorder.events)
    assert sum(e.records for e in recorder.events if isinstance(e, PageWritten)) == 50
    assert sum(e.records for e in recorder.events if isinstance(e, ChunkFinished)) == 50
    assert isinstance(recorder.events[-1], JobFinished)


class Broken:
    def on_event(self, event: Event) -> None:
        raise RuntimeError("listener bug")


async def test_a_broken_listener_cannot_break_a_sync(caplog: pytest.LogCaptureFixture) -> None:
    runner = LocalRunner(
        connector=MemoryConnector({"a": [{"id": "1"}]}),
        store=MemoryStateStore(),
        destination=MemoryDestination(),
        listeners=[Broken()],
    )
    assert (await runner.sync(["a"])).ok
    assert "listener bug" in caplog.text


async def test_logging_listener_is_structured_and_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="statesync")
    runner = LocalRunner(
        connector=MemoryConnector({"a": [{"id": str(i)} for i in range(60)]}, fault=flaky),
        store=MemoryStateStore(),
        destination=MemoryDestination(),
        chunk_policy=ChunkPolicy(2, 10),
        retry_policy=RetryPolicy(attempts=3, initial_delay=0.001),
        listeners=[LoggingListener(secrets=["abcdefghijkl"])],
    )
    await runner.sync(["a"])
    records = [r for r in caplog.records if hasattr(r, "statesync")]
    fields: list[dict[str, Any]] = [r.statesync for r in records]
    kinds = {f["event"] for f in fields}
    assert {
        "TransitionEvent",
        "ChunkStarted",
        "ChunkFinished",
        "RetryScheduled",
        "JobFinished",
        "PageWritten",
    } <= kinds
    retry = next(r for r in records if r.statesync["event"] == "RetryScheduled")
    assert retry.levelno == logging.WARNING
    assert "abcdefghijkl" not in caplog.text and "sk_test_***" in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk_live_51Habcdefgh", "key ***"),
        ("Authorization: Bearer abc.def.ghi-123", "Authorization: Bearer ***"),
        ("postgresql://app:hunter2@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact_masks_credential_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_given_secrets() -> None:
    assert redact("token=s3cr3tvalue!", ["s3cr3tvalue"]) == "token=***!"
