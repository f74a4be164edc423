"""Taking an entity over after its worker died, waiting for a live one, and never leaving a
lease held: ``statesync run`` killed with SIGKILL, then ``statesync resume`` with its
default flags; a second worker on a running job; a fatal error among running siblings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from statesync._lease import LeaseKeeper, take_lease
from statesync._models import Lease
from statesync.errors import LeaseError, StoreError
from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from statesync.stores.sqlite import SQLiteStateStore
from support.clock import ManualTime
from support.crash import (  # noqa: F401 - sandbox is a fixture
    SIZES,
    STATESYNC,
    assert_exact,
    cli,
    sandbox,
    wait_for_requests,
)
from support.namespace import table

# Slow: subprocess crashes and resumes (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow


def store_and_dest(tmp: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp / 'state.db'}", "--dest", f"sqlite:///{tmp / 'data.db'}"]


def small_chunks() -> list[str]:
    return ["--max-iterations", "3", "--page-size", "10"]


def leases_held(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT job_id, entity FROM leases").fetchall()


# A TTL far beyond the resume's own wait: only a takeover lets the resume finish.
@pytest.mark.parametrize("ttl", [None, "3600"])
def test_resume_with_defaults_takes_over_from_a_killed_run(
    sandbox: Sandbox,
    tmp_path: Path,
    ttl: str | None,
) -> None:
    env = {"STATESYNC_API_KEY": sandbox.config.api_key, "STATESYNC_CRASH_AT": "after_checkpoint:4"}
    entities = [a for e in SIZES for a in ("--entity", e)]
    ttl_flag = ["--lease-ttl", ttl] if ttl else []
    first = cli(
        "run",
        "--base-url",
        sandbox.url,
        *entities,
        "--job-id",
        "killed",
        *store_and_dest(tmp_path),
        *small_chunks(),
        *ttl_flag,
        env=env,
    )
    assert first.returncode == -signal.SIGKILL, first.stdout[-500:] + first.stderr[-500:]
    assert leases_held(tmp_path / "state.db"), "the killed run should have left leases behind"
    resumed = cli(
        "resume", "killed", *store_and_dest(tmp_path), env={**env, "STATESYNC_CRASH_AT": ""}
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "took the lease over" in resumed.stderr
    assert "waiting for the lease" not in resumed.stderr
    status = cli("status", "killed", "--store", f"sqlite:///{tmp_path / 'state.db'}", "--json")
    states = {e["entity"]: e["state"] for e in json.loads(status.stdout)["entities"]}
    assert states == dict.fromkeys(SIZES, "complete")
    assert_exact(sandbox, tmp_path / "data.db")
    assert leases_held(tmp_path / "state.db") == []


def test_a_live_holder_is_waited_for_with_a_countdown(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 100})) as running:
        running.faults.configure(latency=0.5)  # the holder must outlive two resumes' start
        env = {**os.environ, "STATESYNC_API_KEY": running.config.api_key}
        common = [*store_and_dest(tmp_path), *small_chunks()]
        one = ["--entity", "customers"]
        first = subprocess.Popen(
            [STATESYNC, "run", "--base-url", running.url, "--job-id", "held", *common, *one],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_requests(running, 2)
            busy = cli("resume", "held", *common, "--wait-lease", "0", env=env)
            assert busy.returncode == 75, busy.stdout + busy.stderr
            assert "another worker holds the lease on 'customers'" in busy.stdout
            assert f"pid {first.pid}" in busy.stdout
            waited = cli("resume", "held", *common, env=env)
        finally:
            out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
        assert waited.returncode == 0, waited.stdout + waited.stderr
        countdown = [line for line in waited.stderr.splitlines() if "waiting for the lease" in line]
        assert countdown, waited.stderr
        assert f"pid {first.pid}" in countdown[0] and "giving up in" in countdown[0]
        assert "took the lease over" not in waited.stderr
        got = sorted(
            r[0]
            for r in sqlite3.connect(tmp_path / "data.db").execute(
                f'SELECT id FROM "{table("customers")}"'
            )
        )
        assert got == sorted(r["id"] for r in running.snapshot("customers"))


def test_an_auth_failure_among_running_siblings_leaves_no_lease(
    sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=1, times=99, status=401))
    try:
        done = cli(
            "run",
            "--base-url",
            sandbox.url,
            *("--entity", "customers", "--entity", "invoices"),
            *("--job-id", "authfail", *store_and_dest(tmp_path), *small_chunks()),
            env={"STATESYNC_API_KEY": sandbox.config.api_key},
        )
    finally:
        sandbox.faults.reset()
    assert done.returncode == 1, done.stdout + done.stderr
    status = cli("status", "authfail", "--store", f"sqlite:///{tmp_path / 'state.db'}", "--json")
    rows = {e["entity"]: e for e in json.loads(status.stdout)["entities"]}
    assert rows["invoices"]["state"] == "failed" and rows["invoices"]["last_error_kind"] == "auth"
    assert rows["customers"]["state"] == "complete"
    assert leases_held(tmp_path / "state.db") == []


# -- in process: the takeover rule, and releases that a cancellation cannot cut ----------


async def test_take_lease_breaks_only_a_dead_local_holders_lease(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.db")
    dead = await store.acquire_lease("j", "e", "gone", 60, host="here", pid=111)
    assert dead is not None
    elsewhere = await take_lease(store, "j", "e", "me", 60, host="there", alive=lambda _: False)
    assert elsewhere.lease is None and elsewhere.holder is not None  # another host: wait
    alive = await take_lease(store, "j", "e", "me", 60, host="here", alive=lambda _: True)
    assert alive.lease is None and alive.holder is not None and alive.holder.pid == 111
    got = await take_lease(store, "j", "e", "me", 60, host="here", alive=lambda pid: pid != 111)
    assert got.lease is not None and got.lease.token > dead.token
    assert got.took_over is not None and got.took_over.pid == 111
    held = await store.get_lease("j", "e")
    assert held is not None and held.owner == "me" and held.pid == os.getpid()
    await store.aclose()


class SlowRelease(MemoryStateStore):
    """Releases take a moment, long enough to be cancelled in the middle of one."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.releasing = asyncio.Event()

    async def release_lease(self, lease: Lease) -> None:
        if lease.entity == self.slow:
            self.releasing.set()
            await asyncio.sleep(0.3)
        await super().release_lease(lease)


async def test_a_release_cancelled_midway_still_releases() -> None:
    store = SlowRelease("e")
    lease = await store.acquire_lease("j", "e", "me", 30)
    assert lease is not None
    keeper = LeaseKeeper(store, lease, 30)
    task = asyncio.create_task(keeper.release())
    await store.releasing.wait()
    task.cancel()  # the sibling's cancellation arrives mid-release
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get_lease("j", "e") is None


async def test_a_fatal_error_cancels_siblings_mid_release_and_no_lease_stays() -> None:
    from statesync.connectors.memory import MemoryConnector
    from support.engine import BrokenFor, rows, runner

    class FailsOnceBReleases(BrokenFor):
        def __init__(self, store: SlowRelease) -> None:
            super().__init__("a")
            self.store = store

        async def write_page(self, job_id: str, entity: str, *a: Any, **kw: Any) -> None:
            if entity == "a":
                await self.store.releasing.wait()  # "b" is mid-release: now fail
            await super().write_page(job_id, entity, *a, **kw)

    from statesync.errors import DestinationError

    store = SlowRelease("b")
    conn = MemoryConnector({"a": rows(50), "b": rows(5)})
    r = runner(conn, store=store, destination=FailsOnceBReleases(store))
    with pytest.raises(DestinationError):
        await r.sync(["a", "b"])
    job = (await store.list_jobs())[0].job_id
    assert await store.get_lease(job, "a") is None
    assert await store.get_lease(job, "b") is None


# -- the heartbeat, driven by an injected clock and sleep (no wall-time waits) -----------


class Renewals(MemoryStateStore):
    def __init__(self, *, down: bool = False) -> None:
        super().__init__()
        self.down = down
        self.renewed = 0

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        if self.down:
            raise StoreError("redis: ConnectionError")
        self.renewed += 1
        return await super().renew_lease(lease, ttl)


async def test_the_heartbeat_renews_every_third_of_the_ttl() -> None:
    clock, store = ManualTime(), Renewals()
    lease = await store.acquire_lease("j", "e", "me", 15)
    assert lease is not None
    keeper = LeaseKeeper(store, lease, 15, clock=clock.clock, sleep=clock.sleep)
    for n in range(4):
        # Each sleep is asked for only once the previous renewal finished.
        assert await clock.tick() == 5.0
        assert store.renewed == n
    assert keeper.current().token == lease.token
    await keeper.release()
    assert await store.get_lease("j", "e") is None


async def test_renewal_rides_out_an_outage_until_the_lease_would_expire() -> None:
    clock, store = ManualTime(), Renewals(down=True)
    lease = await store.acquire_lease("j", "e", "me", 15)
    assert lease is not None
    keeper = LeaseKeeper(store, lease, 15, clock=clock.clock, sleep=clock.sleep)
    assert await clock.tick() == 5.0
    # From 5 s to 15 s a retry every 0.5 s; at 15 s it gives up, half a second short.
    for _ in range(20):
        assert await clock.tick() == 0.5
    await asyncio.wait([keeper._task], timeout=5)
    with pytest.raises(LeaseError, match="before it expired"):
        keeper.current()
    await keeper.release()
