"""Inngest apps over the sandbox: the served functions, Stripe connectors, exact checks."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import inngest
import pytest

from statesync import ChunkPolicy, ConnectorPlugin, JobSpec, PolicySet, RetryPolicy
from statesync.adapters._inngest_steps import ConnectorFactory
from statesync.adapters.inngest import (
    sync_functions,
)
from statesync.connector import BaseConnector
from statesync.connectors.stripe import StripeConnector
from statesync.destination import Destination
from statesync.sandbox import Sandbox, SandboxConfig
from statesync.store import StateStore
from statesync.stores.redis import RedisStateStore
from support.inngest_executor import Executor

RETRY = RetryPolicy(attempts=5, initial_delay=2, jitter=0)


ONE_PAGE_CHUNKS = PolicySet(retry=RETRY, chunk=ChunkPolicy(max_iterations=1, page_size=10))


def functions(
    connectors: Mapping[str, ConnectorFactory | ConnectorPlugin],
    store: StateStore,
    destination: Destination,
    **kw: Any,
) -> Callable[[inngest.Inngest], list[inngest.Function[Any]]]:
    kw.setdefault("policies", ONE_PAGE_CHUNKS)
    kw.setdefault("namespaces", "")  # the shared tables: these tests are about chunks

    def make(client: inngest.Inngest) -> list[inngest.Function[Any]]:
        return sync_functions(
            client, connectors=connectors, store=store, destination=destination, **kw
        )

    return make


SIZES = {"customers": 300, "invoices": 40, "charges": 50}


def stripe_at(sandbox: Sandbox) -> Callable[[JobSpec], BaseConnector]:
    key, url = sandbox.config.api_key, sandbox.url
    return lambda spec: StripeConnector(key, base_url=url)


def stripe(sandbox: Sandbox) -> Mapping[str, Callable[[JobSpec], BaseConnector]]:
    return {"stripe": stripe_at(sandbox)}


def live_ids(db: Path, entity: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(f'SELECT id FROM "{entity}"')]


def assert_exact(sandbox: Sandbox, db: Path, entity: str, table: str | None = None) -> None:
    """``table`` (default: the entity's name) holds the source's ``entity``, once each."""
    where = table or entity
    got = live_ids(db, where)
    assert len(got) == len(set(got)), f"{where}: duplicated rows"
    assert set(got) == {r["id"] for r in sandbox.snapshot(entity)}, f"{where}: rows differ"


def job_output(ex: Executor) -> dict[str, Any]:
    (job,) = ex.runs_of("-job")
    assert job.status == "completed", job.error
    out: dict[str, Any] = job.output
    return out


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:05d}", "n": i} for i in range(n)]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The emulator with the Inngest tests' data sizes."""
    with Sandbox(SandboxConfig(sizes=SIZES)) as running:
        yield running


@pytest.fixture
async def redis_store(redis_url: str, key_prefix: str) -> AsyncIterator[RedisStateStore]:
    """A store for the test's own assertions (the app's store lives on the server loop)."""
    store = RedisStateStore.from_url(redis_url, prefix=key_prefix)
    yield store
    await store.aclose()
