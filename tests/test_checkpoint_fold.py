"""Page checkpoints committed with the page (``CheckpointingDestination``).

The store is written at the chunk's transitions, not after every page; a crash mid-chunk
resumes from the position the destination committed with its last page, and a
checkpoint that does not extend the store's record as it stands is never adopted.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from statesync import ChunkPolicy
from statesync._checkpoint import PageCheckpoint, decode
from statesync._converter import dumps
from statesync._models import EntityRecord, FetchState, Record, SyncMode, SyncState
from statesync.adapters.local import LocalRunner
from statesync.connectors.stripe import StripeConnector
from statesync.destination import CheckpointingDestination, StagedTable, StagingCheck
from statesync.destinations.memory import MemoryDestination
from statesync.destinations.sqlite import SQLiteDestination
from statesync.sandbox import Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from statesync.stores.sqlite import SQLiteStateStore
from support.crash import cli, live_ids

PAGES = 13
"""130 customers, 10 a page."""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"customers": 130})) as running:
        yield running


def connector(sandbox: Sandbox) -> StripeConnector:
    return StripeConnector(sandbox.config.api_key, base_url=sandbox.url, entities=["customers"])


def customer_requests(sandbox: Sandbox) -> int:
    return sum(1 for e in sandbox.log() if e.path == "/v1/customers")


class PlainDestination:
    """A destination that keeps no checkpoints (the protocol's minimum), over memory."""

    def __init__(self) -> None:
        self.inner = MemoryDestination()

    async def prepare(self, job_id: str, entity: str, mode: SyncMode) -> None:
        await self.inner.prepare(job_id, entity, mode)

    async def write_page(
        self,
        job_id: str,
        entity: str,
        mode: SyncMode,
        records: Sequence[Record],
        watermark: datetime | None,
        *,
        fence: int | None = None,
    ) -> None:
        await self.inner.write_page(job_id, entity, mode, records, watermark, fence=fence)

    async def finalize(
        self, job_id: str, entity: str, mode: SyncMode, *, fence: int | None = None
    ) -> None:
        await self.inner.finalize(job_id, entity, mode, fence=fence)

    async def discard(self, job_id: str, entity: str) -> None:
        await self.inner.discard(job_id, entity)

    async def inspect(self, job_id: str, entity: str) -> StagingCheck:
        return await self.inner.inspect(job_id, entity)

    async def list_staging(self) -> Sequence[StagedTable]:
        return await self.inner.list_staging()

    async def drop_staging(self, staged: StagedTable) -> None:
        await self.inner.drop_staging(staged)

    async def watermark(self, entity: str) -> datetime | None:
        return await self.inner.watermark(entity)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def sync_versions(sandbox: Sandbox, destination: object) -> tuple[int, int]:
    """(store version of the entity at the end, pages landed) of one full sync."""
    store = MemoryStateStore()
    runner = LocalRunner(
        connector=connector(sandbox),
        store=store,
        destination=destination,  # type: ignore[arg-type]
        chunk_policy=ChunkPolicy(max_iterations=10, page_size=10),
    )
    result = await runner.sync(["customers"])
    assert result.ok, result
    rec = (await store.list_entities(result.job_id))[0]
    await runner.connector.aclose()
    return rec.version, rec.api_calls


async def test_store_is_written_per_chunk_with_a_checkpointing_destination(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    folded = SQLiteDestination(tmp_path / "data.db")
    assert isinstance(folded, CheckpointingDestination)
    version, pages = await sync_versions(sandbox, folded)
    assert pages == PAGES
    # start, chunk_finished, next_chunk, complete (+ the job's creation): no page saves.
    assert version <= 6, version
    assert set(folded.rows("stripe__customers")) == {r["id"] for r in sandbox.snapshot("customers")}
    await folded.aclose()


async def test_a_destination_without_checkpoints_gets_a_store_save_per_page(
    sandbox: Sandbox,
) -> None:
    plain = PlainDestination()
    assert not isinstance(plain, CheckpointingDestination)
    version, pages = await sync_versions(sandbox, plain)
    assert pages == PAGES
    assert version >= PAGES + 4, version


def test_checkpoint_is_adopted_only_when_it_extends_the_stored_version() -> None:
    rec = EntityRecord("j", "customers", SyncMode.FULL, SyncState.FETCHING, version=7)
    ahead = PageCheckpoint(7, FetchState(cursor="cus_9", total_processed=90), 9, 130, None)
    assert decode(dumps(ahead), rec) == ahead
    stale = PageCheckpoint(6, FetchState(cursor="cus_9", total_processed=90), 9, 130, None)
    assert decode(dumps(stale), rec) is None
    assert decode(None, rec) is None
    assert decode("{not json", rec) is None


async def test_a_stale_checkpoint_in_the_destination_is_ignored(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A checkpoint of another store version (a restored store, a restart) must not move
    the walk: the sync reads everything from the store's position and ends exact."""
    dest = SQLiteDestination(tmp_path / "data.db")
    store = SQLiteStateStore(tmp_path / "state.db")
    runner = LocalRunner(
        connector=connector(sandbox),
        store=store,
        destination=dest,
        chunk_policy=ChunkPolicy(max_iterations=10, page_size=10),
    )
    job_id = await runner.create_job(["customers"])
    rec = (await store.list_entities(job_id))[0]
    bogus = FetchState(cursor="cus_bogus", total_processed=120)
    far = PageCheckpoint(rec.version + 5, bogus, 12, 130, None)
    table = "stripe__customers"
    await dest.prepare(rec.destination_job, table, SyncMode.FULL)
    await dest.write_page(
        rec.destination_job, table, SyncMode.FULL, [], None, checkpoint=dumps(far)
    )
    before = customer_requests(sandbox)
    result = await runner.run(job_id)
    assert result.ok, result
    assert customer_requests(sandbox) - before == PAGES
    assert set(dest.rows(table)) == {r["id"] for r in sandbox.snapshot("customers")}
    assert await dest.read_checkpoint(rec.destination_job, table) is None  # dropped at the swap
    await runner.connector.aclose()
    await dest.aclose()
    await store.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_page_write:5", "after_checkpoint:7"])
def test_crash_mid_chunk_resumes_after_the_last_committed_page(
    sandbox: Sandbox, tmp_path: Path, point: str
) -> None:
    """Killed after page n of a 10-page chunk: the resumed run asks only for pages n+1..13
    (a store saved only per chunk, without the destination's checkpoint, would start the
    chunk over; one saved after the page's commit would ask for page n again)."""
    landed = int(point.split(":")[1])
    dest, store = tmp_path / "data.db", f"sqlite:///{tmp_path / 'state.db'}"
    args = ["--store", store, "--dest", f"sqlite:///{dest}", "--page-size", "10"]
    args += ["--max-iterations", "10", "--lease-ttl", "1", "--wait-lease", "30"]
    env = {"STATESYNC_API_KEY": sandbox.config.api_key}
    first = cli(
        "run", "--base-url", sandbox.url, "--entity", "customers", "--job-id", "fold",
        *args, env={**env, "STATESYNC_CRASH_AT": point},
    )  # fmt: skip
    assert first.returncode == -signal.SIGKILL, first.stdout[-500:] + first.stderr[-500:]
    before = customer_requests(sandbox)
    second = cli("resume", "fold", *args, env=env)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert customer_requests(sandbox) - before == PAGES - landed
    got = live_ids(dest, "customers")
    assert len(got) == len(set(got))
    assert set(got) == {r["id"] for r in sandbox.snapshot("customers")}
