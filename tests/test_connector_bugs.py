"""A bug inside a connector fails that entity with a typed, recorded error; siblings go on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from statesync import ChunkPolicy, RetryPolicy, SyncState
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.errors import ErrorKind
from statesync.stores.sqlite import SQLiteStateStore


def rows(n: int, *, broken_at: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"id": f"r{i:03d}", "n": i} for i in range(n)]
    if broken_at is not None:
        del out[broken_at]["id"]  # the connector's record builder reads row["id"]
    return out


def runner(tmp: Path, data: dict[str, list[dict[str, Any]]], **kw: Any) -> LocalRunner:
    return LocalRunner(
        connector=MemoryConnector(data, updated_field=None),
        store=SQLiteStateStore(tmp / "s.db"),
        destination=MemoryDestination(),
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=10),
        retry_policy=kw.pop("retry_policy", RetryPolicy(attempts=3, initial_delay=0, jitter=0)),
        **kw,
    )


async def test_a_key_error_mid_chunk_fails_only_that_entity_with_the_frame(tmp_path: Path) -> None:
    data = {"good": rows(45), "bad": rows(45, broken_at=25), "other": rows(12)}
    r = runner(tmp_path, data)
    result = await r.sync(list(data), job_id="j")
    states = {e.entity: e.state for e in result.entities}
    assert states == {
        "good": SyncState.COMPLETE,
        "bad": SyncState.FAILED,
        "other": SyncState.COMPLETE,
    }
    assert not result.ok and not result.interrupted
    await r.store.aclose()
    # A new store object on the same file: the error was persisted, not just returned.
    store = SQLiteStateStore(tmp_path / "s.db")
    rec = await store.get_entity("j", "bad")
    assert rec.last_error is not None
    assert rec.last_error.kind == ErrorKind.INTERNAL
    assert rec.last_error.exception == "KeyError"
    assert rec.last_error.frame is not None
    assert rec.last_error.frame.endswith("in _record")
    assert "connectors/memory.py:" in rec.last_error.frame
    assert "KeyError: 'id'" in rec.last_error.message
    assert rec.attempts == 1  # not retried by default: a bug does not go away by waiting
    assert rec.records == 20  # the two pages before the bad row stay checkpointed
    failed = [t for t in await store.history("j", "bad") if t.dest is SyncState.FAILED]
    assert failed and failed[0].error is not None and failed[0].error.exception == "KeyError"
    await store.aclose()


async def test_internal_errors_are_retried_when_the_policy_says_so(tmp_path: Path) -> None:
    policy = RetryPolicy(
        attempts=3, initial_delay=0, jitter=0, retry_on={ErrorKind.INTERNAL, ErrorKind.TRANSIENT}
    )
    r = runner(tmp_path, {"bad": rows(15, broken_at=3)}, retry_policy=policy)
    result = await r.sync(["bad"], job_id="j")
    rec = await r.store.get_entity("j", "bad")
    assert result.entities[0].state is SyncState.FAILED
    assert rec.attempts == 3
    retries = [t for t in await r.store.history("j", "bad") if t.trigger == "retry_chunk"]
    assert len(retries) == 2 and all(t.error and t.error.kind == "internal" for t in retries)
    await r.store.aclose()


async def test_secrets_in_a_bug_message_are_masked(tmp_path: Path) -> None:
    key = "sk_test_" + "a1B2c3D4e5F6g7"
    # The connector looks records up by a field named like a key: the KeyError says it.
    conn = MemoryConnector({"bad": [{"id": "1"}]}, id_field=key, updated_field=None)
    r = LocalRunner(
        connector=conn, store=SQLiteStateStore(tmp_path / "s.db"), destination=MemoryDestination()
    )
    await r.sync(["bad"], job_id="j")
    rec = await r.store.get_entity("j", "bad")
    assert rec.last_error is not None and rec.last_error.kind == "internal"
    assert "KeyError: '***'" in rec.last_error.message
    await r.store.aclose()
    assert key not in (tmp_path / "s.db").read_bytes().decode("latin-1")


class BadPlanner(MemoryConnector):
    """A bug in a planning hook, not in fetch_page."""

    def plan_pages(self, request: Any, count: int) -> Any:
        raise ZeroDivisionError("division by zero")


async def test_a_bug_in_a_planning_hook_is_recorded_too(tmp_path: Path) -> None:
    r = LocalRunner(
        connector=BadPlanner({"a": rows(30)}, updated_field=None),
        store=SQLiteStateStore(tmp_path / "s.db"),
        destination=MemoryDestination(),
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=10, pages_in_flight=2),
    )
    result = await r.sync(["a"], job_id="j")
    rec = await r.store.get_entity("j", "a")
    assert result.entities[0].state is SyncState.FAILED
    assert rec.last_error is not None and rec.last_error.exception == "ZeroDivisionError"
    assert rec.last_error.frame is not None and rec.last_error.frame.endswith("in plan_pages")
    await r.store.aclose()
