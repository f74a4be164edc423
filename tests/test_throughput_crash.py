"""SIGKILL a sync running with concurrency on (planned offsets, time windows), resume it,
and demand exact data: the crash-resume guarantee does not depend on the concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync.sandbox import Sandbox, SandboxConfig
from support.crash import live_ids

# Slow: subprocess crashes and resumes (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

SIZES = {"customers": 130, "invoices": 75, "close.lead": 130, "close.contact": 75}
ENTITIES = {"stripe": ("customers", "invoices"), "close": ("lead", "contact")}
CASES = [
    "before_fetch:5",
    "after_fetch:3",
    "in_page_write:7",
    "after_page_write:5",
    "after_checkpoint:4",
    "after_checkpoint:11",
    "before_transition:3",
    "after_transition:5",
    "in_finalize:1",
]

SCRIPT = """
import asyncio, sys
from statesync import ChunkPolicy, RetryPolicy
from statesync.adapters.local import LocalRunner
from statesync.connectors.close import CloseConnector
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.stores.sqlite import SQLiteStateStore

url, kind, state, data, key = sys.argv[1:6]
entities = {"stripe": ["customers", "invoices"], "close": ["lead", "contact"]}[kind]


async def main() -> None:
    if kind == "stripe":
        conn = StripeConnector(key, base_url=url)
    else:
        conn = CloseConnector(key, base_url=url + "/api/v1")
    runner = LocalRunner(
        connector=conn,
        store=SQLiteStateStore(state),
        destination=SQLiteDestination(data),
        chunk_policy=ChunkPolicy(max_iterations=4, page_size=10, pages_in_flight=4, lease_ttl=1),
        retry_policy=RetryPolicy(attempts=3, initial_delay=0.01),
        lease_wait=30,
    )
    jobs = [j.job_id for j in await runner.store.list_jobs()]
    if "crashjob" in jobs:
        result = await runner.run("crashjob")
    else:
        result = await runner.sync(entities, job_id="crashjob")
    print("ok" if result.ok else result)


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes=SIZES)) as running:
        yield running


def run(script: Path, args: list[str], crash: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STATESYNC_CRASH_AT": crash}
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("point", CASES)
@pytest.mark.parametrize("kind", ["stripe", "close"])
def test_concurrent_sync_survives_sigkill(
    sandbox: Sandbox, tmp_path: Path, kind: str, point: str
) -> None:
    script = tmp_path / "sync.py"
    script.write_text(SCRIPT)
    db = tmp_path / "data.db"
    args = [sandbox.url, kind, str(tmp_path / "state.db"), str(db), sandbox.config.api_key]
    first = run(script, args, point)
    assert first.returncode == -signal.SIGKILL, first.stdout[-500:] + first.stderr[-2000:]
    second = run(script, args, "")
    assert second.returncode == 0 and "ok" in second.stdout, second.stdout + second.stderr[-2000:]
    for entity in ENTITIES[kind]:
        source = entity if kind == "stripe" else f"close.{entity}"
        got = live_ids(db, entity, kind)
        assert len(got) == len(set(got))
        assert set(got) == {r["id"] for r in sandbox.snapshot(source)}
