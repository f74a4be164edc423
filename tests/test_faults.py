"""The engine against the emulator's faults, through the real Stripe SDK over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync import ChunkPolicy, RetryPolicy, SyncState
from statesync.adapters.local import LocalRunner
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from statesync.stores.redis import RedisStateStore

SECRET = "sk_test_TOPSECRET_0123456789abcdef"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"customers": 120, "invoices": 40}, api_key=SECRET)) as sb:
        yield sb


def make_runner(sandbox: Sandbox, tmp: Path, *, key: str = SECRET, **kw: object) -> LocalRunner:
    return LocalRunner(
        connector=StripeConnector(key, base_url=sandbox.url),
        store=kw.pop("store", MemoryStateStore()),  # type: ignore[arg-type]
        destination=SQLiteDestination(tmp / "data.db"),
        namespace="",  # the shared tables: this test is not about namespaces
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=10),
        retry_policy=kw.pop("retry", RetryPolicy(attempts=3, initial_delay=0.01, jitter=0)),  # type: ignore[arg-type]
    )


def customer_requests(sandbox: Sandbox) -> list:  # type: ignore[type-arg]
    return [e for e in sandbox.log() if e.path == "/v1/customers"]


@pytest.mark.slow
async def test_429_retry_after_is_waited_out(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/customers", nth=4, status=429, headers={"Retry-After": "2"})
    )
    runner = make_runner(sandbox, tmp_path)
    result = await runner.sync(["customers"])
    assert result.ok
    log = customer_requests(sandbox)
    limited = next(i for i, e in enumerate(log) if e.status == 429)
    waited = log[limited + 1].started - log[limited].ended
    assert waited >= 2.0, f"retried after {waited:.3f}s, the server asked for 2s"
    assert set(runner.destination.rows("customers")) == {  # type: ignore[attr-defined]
        r["id"] for r in sandbox.snapshot("customers")
    }


async def test_5xx_is_retried_per_policy_then_fails(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/customers", nth=2, times=2, status=503))
    ok = await make_runner(sandbox, tmp_path).sync(["customers"])
    assert ok.ok  # two 503s, three attempts allowed
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=1, times=99, status=500))
    bad = await make_runner(sandbox, tmp_path).sync(["invoices"])
    assert bad.entities[0].state is SyncState.FAILED
    assert len([e for e in sandbox.log() if e.path == "/v1/invoices"]) == 3


async def test_401_fails_at_once_with_a_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    runner = make_runner(sandbox, tmp_path, key="sk_test_wrong_key_999")
    result = await runner.sync(["customers", "invoices"])
    assert [e.state for e in result.entities] == [SyncState.FAILED, SyncState.FAILED]
    assert len(sandbox.log()) == 2  # one request per entity: auth errors are never retried
    rec = await runner.store.get_entity(result.job_id, "customers")
    assert rec.last_error is not None and rec.last_error.kind == "auth"
    assert "Invalid API Key" in rec.last_error.message
    assert "sk_test_wrong_key_999" not in rec.last_error.message


async def test_malformed_body_retries_then_fails_with_a_typed_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/customers", nth=3, times=99, kind="missing_data", status=200)
    )
    runner = make_runner(sandbox, tmp_path)
    result = await runner.sync(["customers"])
    rec = await runner.store.get_entity(result.job_id, "customers")
    assert rec.state is SyncState.FAILED and rec.attempts == 3
    assert rec.last_error is not None and rec.last_error.kind == "malformed_response"
    message = rec.last_error.message
    assert "entity 'customers'" in message and "GET /v1/customers" in message
    assert "KeyError" not in message and "Traceback" not in message


@pytest.mark.slow
async def test_the_api_key_reaches_no_log_store_row_or_error(
    sandbox: Sandbox,
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/customers", nth=2, status=500))
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/customers", nth=5, status=429, headers={"Retry-After": "1"})
    )
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/invoices", nth=2, kind="malformed", status=200)
    )
    store = RedisStateStore.from_url(redis_url, prefix=key_prefix)
    runner = make_runner(sandbox, tmp_path, store=store)
    result = await runner.sync(["customers", "invoices"])
    assert result.ok
    bad = make_runner(sandbox, tmp_path, key=SECRET[:-4] + "XXXX", store=store)
    failed = await bad.sync(["customers"])
    errors = [e.error or "" for e in failed.entities]
    assert errors and all(errors)

    seen: list[str] = [caplog.text, *errors]
    client = store._client  # the store's own connection, to read back what it wrote
    async for key in client.scan_iter(match=f"{key_prefix}*"):
        seen.append(str(key))
        typed = await client.type(key)
        kind = typed.decode() if isinstance(typed, bytes) else typed
        if kind == "hash":
            seen.append(str(await client.hgetall(key)))
        elif kind == "list":
            seen.append(str(await client.lrange(key, 0, -1)))
        elif kind == "string":
            seen.append(str(await client.get(key)))
        elif kind == "zset":
            seen.append(str(await client.zrange(key, 0, -1)))
    await runner.destination.aclose()
    for db in tmp_path.glob("*.db*"):  # noqa: ASYNC240 - a test reading its own temp files
        seen.append(db.read_bytes().decode("latin-1"))
    # The scan really read what was written: records, store keys and request logs.
    assert any("cus_" in s for s in seen[2:]) and any(key_prefix in s for s in seen)
    assert "/v1/customers" in caplog.text
    for secret in (SECRET, SECRET[:-4] + "XXXX", SECRET[8:24]):
        assert not [s for s in seen if secret in s], f"{secret[:10]}… leaked"
    await store.aclose()
