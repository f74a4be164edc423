"""The contract every :class:`~statesync.destination.Destination` must pass.

Subclass :class:`DestinationContract` in a ``test_*.py`` module (the class name must start
with ``Test``) and override the ``make`` fixture to return an async factory of fresh
destinations that all share one underlying place (file, database, schema), so a test can
reopen it. The destination must also offer the read helpers ``rows(entity)`` and
``staged(job_id, entity)`` returning ``{id: record data}``, sync or async.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from statesync._models import Record, SyncMode
from statesync.destination import (
    CheckpointingDestination,
    Destination,
    StagedTable,
    StagingCheck,
)
from statesync.destinations._names import staging_table
from statesync.errors import ConfigurationError, DestinationError, LeaseError

DestinationFactory = Callable[[], Awaitable[Destination]]
Table = Mapping[str, Mapping[str, Any]]

FULL, INCR = SyncMode.FULL, SyncMode.INCREMENTAL
T0 = datetime(2024, 1, 1, tzinfo=UTC)
ENTITY = "customers"

BAD_NAMES = ["x; DROP TABLE y", "1abc", "", "a" * 100, 'we"ird', "sp ace", "é"]


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def rec(rid: str, hours: int = 0, **data: Any) -> Record:
    return Record(id=rid, data={"id": rid, **data}, updated_at=at(hours), created_at=T0)


def page(*ids: str, hours: int = 0, **data: Any) -> list[Record]:
    return [rec(i, hours, **data) for i in ids]


async def _resolve(value: Any) -> dict[str, dict[str, Any]]:
    out = await value if inspect.isawaitable(value) else value
    return dict(out)


async def live(dest: Destination, entity: str = ENTITY) -> dict[str, dict[str, Any]]:
    return await _resolve(dest.rows(entity))  # type: ignore[attr-defined]


async def staged(dest: Destination, job: str, entity: str = ENTITY) -> dict[str, dict[str, Any]]:
    return await _resolve(dest.staged(job, entity))  # type: ignore[attr-defined]


async def full_sync(
    dest: Destination, job: str, pages: list[list[Record]], entity: str = ENTITY
) -> None:
    """What the engine does for a full sync: prepare per chunk, write pages, finalize."""
    await dest.prepare(job, entity, FULL)
    for records in pages:
        marks = [r.watermark for r in records if r.watermark is not None]
        await dest.write_page(job, entity, FULL, records, max(marks) if marks else None)
    await dest.finalize(job, entity, FULL)


async def incremental(dest: Destination, job: str, records: list[Record], finalize: bool) -> None:
    await dest.prepare(job, ENTITY, INCR)
    marks = [r.watermark for r in records if r.watermark is not None]
    await dest.write_page(job, ENTITY, INCR, records, max(marks) if marks else None)
    if finalize:
        await dest.finalize(job, ENTITY, INCR)


class DestinationContract:
    """The shared tests. Subclasses override :meth:`make`."""

    @pytest.fixture
    def make(self) -> DestinationFactory:
        raise NotImplementedError("override the make fixture")

    @pytest.fixture
    async def dest(self, make: DestinationFactory) -> AsyncIterator[Destination]:
        destination = await make()
        yield destination
        await destination.aclose()

    async def test_is_a_destination(self, dest: Destination) -> None:
        assert isinstance(dest, Destination)

    # -- full syncs -----------------------------------------------------------

    async def test_full_sync_stages_until_finalize(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a", "b")])
        await dest.prepare("job-2", ENTITY, FULL)
        await dest.write_page("job-2", ENTITY, FULL, page("c", hours=5), at(5))
        assert set(await staged(dest, "job-2")) == {"c"}
        assert set(await live(dest)) == {"a", "b"}
        assert await dest.watermark(ENTITY) == at(0)
        await dest.finalize("job-2", ENTITY, FULL)
        assert set(await live(dest)) == {"c"}
        assert await staged(dest, "job-2") == {}
        assert await dest.watermark(ENTITY) == at(5)

    async def test_finalize_removes_records_absent_from_new_data(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a", "b"), page("c")])
        await full_sync(dest, "job-2", [page("a", v=2), page("c", v=2)])
        assert await live(dest) == {
            "a": {"id": "a", "v": 2},
            "c": {"id": "c", "v": 2},
        }

    async def test_prepare_per_chunk_keeps_earlier_chunks(self, dest: Destination) -> None:
        await dest.prepare("job-1", ENTITY, FULL)
        await dest.write_page("job-1", ENTITY, FULL, page("a"), at(0))
        await dest.prepare("job-1", ENTITY, FULL)
        await dest.write_page("job-1", ENTITY, FULL, page("b"), at(1))
        await dest.finalize("job-1", ENTITY, FULL)
        assert set(await live(dest)) == {"a", "b"}

    async def test_finalize_twice_is_a_noop(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a", hours=3)])
        await dest.finalize("job-1", ENTITY, FULL)
        assert set(await live(dest)) == {"a"}
        assert await dest.watermark(ENTITY) == at(3)

    async def test_crash_after_finalize_then_rerun_is_a_noop(self, dest: Destination) -> None:
        # The engine prepares again before its retried finalize: nothing may change,
        # and no empty staging table may be left behind.
        await full_sync(dest, "job-1", [page("a", hours=3)])
        await dest.prepare("job-1", ENTITY, FULL)
        await dest.finalize("job-1", ENTITY, FULL)
        assert set(await live(dest)) == {"a"}
        assert await staged(dest, "job-1") == {}
        assert await dest.watermark(ENTITY) == at(3)

    async def test_finalize_without_staging_or_swap_fails(self, dest: Destination) -> None:
        with pytest.raises(DestinationError, match=ENTITY):
            await dest.finalize("never-prepared", ENTITY, FULL)

    async def test_finalize_after_discard_fails(self, dest: Destination) -> None:
        await dest.prepare("job-1", ENTITY, FULL)
        await dest.write_page("job-1", ENTITY, FULL, page("a"), at(0))
        await dest.discard("job-1", ENTITY)
        with pytest.raises(DestinationError):
            await dest.finalize("job-1", ENTITY, FULL)

    @pytest.mark.parametrize("mode", [FULL, INCR])
    async def test_page_written_twice_leaves_one_row_per_id(
        self, dest: Destination, mode: SyncMode
    ) -> None:
        await dest.prepare("job-1", ENTITY, mode)
        records = page("a", "b", v=1)
        await dest.write_page("job-1", ENTITY, mode, records, at(0))
        await dest.write_page("job-1", ENTITY, mode, page("a", "b", v=2), at(0))
        await dest.finalize("job-1", ENTITY, mode)
        assert await live(dest) == {"a": {"id": "a", "v": 2}, "b": {"id": "b", "v": 2}}

    async def test_failed_job_leaves_live_untouched(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a", "b", hours=1)])
        before = await live(dest)
        await dest.prepare("job-2", ENTITY, FULL)
        await dest.write_page("job-2", ENTITY, FULL, page("x", hours=9), at(9))
        # Its last chunk failed: never finalized.
        assert await live(dest) == before
        assert await dest.watermark(ENTITY) == at(1)
        await dest.discard("job-2", ENTITY)
        assert await staged(dest, "job-2") == {}
        assert await live(dest) == before
        assert await dest.watermark(ENTITY) == at(1)

    @pytest.mark.parametrize("mode", [FULL, INCR])
    async def test_a_stale_fence_is_refused_and_writes_nothing(
        self, dest: Destination, mode: SyncMode
    ) -> None:
        await dest.prepare("job-1", ENTITY, mode)
        await dest.write_page("job-1", ENTITY, mode, page("a", v=1), None, fence=1)
        # The successor (token 2) writes; then the old writer's late page arrives.
        await dest.write_page("job-1", ENTITY, mode, page("a", v=2), None, fence=2)
        with pytest.raises(LeaseError, match="stale"):
            await dest.write_page("job-1", ENTITY, mode, page("a", v=1), None, fence=1)
        with pytest.raises(LeaseError):
            await dest.finalize("job-1", ENTITY, mode, fence=1)
        await dest.write_page("job-1", ENTITY, mode, page("b", v=2), None, fence=2)
        await dest.finalize("job-1", ENTITY, mode, fence=2)
        rows = await live(dest)
        assert rows["a"]["v"] == 2 and set(rows) == {"a", "b"}

    async def test_fences_are_per_job_and_entity(self, dest: Destination) -> None:
        await dest.prepare("job-1", ENTITY, FULL)
        await dest.write_page("job-1", ENTITY, FULL, page("a"), None, fence=9)
        await dest.prepare("job-2", ENTITY, FULL)
        await dest.write_page("job-2", ENTITY, FULL, page("b"), None, fence=1)
        await dest.prepare("job-1", "orders", FULL)
        await dest.write_page("job-1", "orders", FULL, page("c"), None, fence=1)

    async def test_discard_of_unknown_job_is_harmless(self, dest: Destination) -> None:
        await dest.discard("nobody", ENTITY)

    async def test_two_jobs_stage_separately(self, dest: Destination) -> None:
        for job in ("job-a", "job-b"):
            await dest.prepare(job, ENTITY, FULL)
        await dest.write_page("job-a", ENTITY, FULL, page("a", hours=1), at(1))
        await dest.write_page("job-b", ENTITY, FULL, page("b", hours=2), at(2))
        assert set(await staged(dest, "job-a")) == {"a"}
        assert set(await staged(dest, "job-b")) == {"b"}
        await dest.finalize("job-a", ENTITY, FULL)
        assert set(await live(dest)) == {"a"}
        assert set(await staged(dest, "job-b")) == {"b"}
        await dest.finalize("job-b", ENTITY, FULL)
        assert set(await live(dest)) == {"b"}
        assert await dest.watermark(ENTITY) == at(2)

    async def test_entities_are_independent(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a", hours=1)], entity="one")
        await full_sync(dest, "job-1", [page("b", hours=2)], entity="two")
        assert set(await live(dest, "one")) == {"a"}
        assert set(await live(dest, "two")) == {"b"}
        assert await dest.watermark("one") == at(1)

    async def test_full_sync_without_timestamps_clears_the_mark(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a", hours=4)])
        await full_sync(dest, "job-2", [[Record(id="b", data={"n": 1})]])
        assert await live(dest) == {"b": {"n": 1}}
        assert await dest.watermark(ENTITY) is None

    # -- incremental syncs ----------------------------------------------------

    async def test_incremental_upserts_into_live(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a", "b", v=1)])
        await dest.prepare("job-2", ENTITY, INCR)
        await dest.write_page("job-2", ENTITY, INCR, page("b", "c", hours=2, v=2), at(2))
        assert await live(dest) == {
            "a": {"id": "a", "v": 1},
            "b": {"id": "b", "v": 2},
            "c": {"id": "c", "v": 2},
        }

    async def test_incremental_mark_is_published_only_at_finalize(self, dest: Destination) -> None:
        await incremental(dest, "job-1", page("a", hours=1), finalize=True)
        assert await dest.watermark(ENTITY) == at(1)
        await incremental(dest, "job-2", page("b", hours=5), finalize=False)
        assert await dest.watermark(ENTITY) == at(1)
        await dest.write_page("job-2", ENTITY, INCR, page("c", hours=3), at(3))
        await dest.finalize("job-2", ENTITY, INCR)
        assert await dest.watermark(ENTITY) == at(5)
        await dest.finalize("job-2", ENTITY, INCR)
        assert await dest.watermark(ENTITY) == at(5)

    async def test_incremental_mark_never_moves_backwards(self, dest: Destination) -> None:
        await incremental(dest, "job-1", page("a", hours=8), finalize=True)
        await incremental(dest, "job-2", page("b", hours=2), finalize=True)
        assert await dest.watermark(ENTITY) == at(8)
        assert set(await live(dest)) == {"a", "b"}

    async def test_abandoned_incremental_job_publishes_nothing(self, dest: Destination) -> None:
        await incremental(dest, "job-1", page("a", hours=8), finalize=False)
        await dest.discard("job-1", ENTITY)
        await dest.finalize("job-1", ENTITY, INCR)
        assert await dest.watermark(ENTITY) is None

    async def test_incremental_without_prepare_fails(self, dest: Destination) -> None:
        with pytest.raises(DestinationError):
            await dest.write_page("job-1", "unprepared", INCR, page("a"), None)

    async def test_watermark_is_tz_aware_and_exact(self, dest: Destination) -> None:
        plus2 = timezone(timedelta(hours=2))
        mark = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=plus2)
        await dest.prepare("job-1", ENTITY, INCR)
        await dest.write_page("job-1", ENTITY, INCR, page("a"), mark)
        await dest.finalize("job-1", ENTITY, INCR)
        got = await dest.watermark(ENTITY)
        assert got is not None and got.tzinfo is not None
        assert got == mark

    async def test_no_watermark_before_any_sync(self, dest: Destination) -> None:
        assert await dest.watermark("nothing_yet") is None

    # -- names and data -------------------------------------------------------

    @pytest.mark.parametrize("name", BAD_NAMES)
    async def test_bad_entity_names_are_refused(self, dest: Destination, name: str) -> None:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: dest.prepare("j", name, FULL),
            lambda: dest.prepare("j", name, INCR),
            lambda: dest.write_page("j", name, INCR, page("a"), None),
            lambda: dest.finalize("j", name, FULL),
            lambda: dest.discard("j", name),
            lambda: dest.watermark(name),
        ]
        for call in calls:
            with pytest.raises(ConfigurationError) as info:
                await call()
            assert repr(name) in str(info.value)

    @pytest.mark.parametrize("name", ["_", "A", "a" * 63, "Mixed_Case_9"])
    async def test_good_entity_names_work(self, dest: Destination, name: str) -> None:
        await full_sync(dest, "job-1", [page("a")], entity=name)
        assert set(await live(dest, name)) == {"a"}

    @pytest.mark.parametrize("job", ["job'; DROP TABLE customers; --", 'j"o"b', "ジョブ 🚀", ""])
    async def test_any_job_id_works(self, dest: Destination, job: str) -> None:
        await full_sync(dest, job, [page("a")])
        await dest.finalize(job, ENTITY, FULL)
        assert set(await live(dest)) == {"a"}

    async def test_json_round_trips(self, dest: Destination) -> None:
        data: dict[str, Any] = {
            "quote": 'it\'s "quoted" \\ back',
            "sql": "'); DROP TABLE customers; --",
            "unicode": "Zoë — 東京 🚀",
            "nested": {"list": [1, 2.5, None, True, {"k": []}], "empty": {}},
            "big": 2**62,
        }
        odd = Record(id="id 'with' \"quotes\" é", data=data)
        await full_sync(dest, "job-1", [[odd]])
        assert await live(dest) == {odd.id: data}

    async def test_unserialisable_record_is_a_destination_error(self, dest: Destination) -> None:
        await dest.prepare("job-1", ENTITY, FULL)
        bad = Record(id="a", data={"when": object()})
        with pytest.raises(DestinationError):
            await dest.write_page("job-1", ENTITY, FULL, [bad], None)

    @pytest.mark.parametrize("mode", [FULL, INCR])
    async def test_empty_page(self, dest: Destination, mode: SyncMode) -> None:
        await dest.prepare("job-1", ENTITY, mode)
        await dest.write_page("job-1", ENTITY, mode, [], None)
        await dest.finalize("job-1", ENTITY, mode)
        assert await live(dest) == {}
        assert await dest.watermark(ENTITY) is None

    async def test_empty_full_sync_empties_the_live_table(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a")])
        await full_sync(dest, "job-2", [[]])
        assert await live(dest) == {}

    # -- reconciliation and gc ------------------------------------------------

    async def test_inspect_follows_a_full_sync(self, dest: Destination) -> None:
        assert await dest.inspect("job-1", ENTITY) == StagingCheck(False, False, None)
        await dest.prepare("job-1", ENTITY, FULL)
        await dest.write_page("job-1", ENTITY, FULL, page("a"), None, fence=3)
        assert await dest.inspect("job-1", ENTITY) == StagingCheck(False, True, 3)
        await dest.finalize("job-1", ENTITY, FULL, fence=3)
        assert await dest.inspect("job-1", ENTITY) == StagingCheck(True, False, 3)
        # Another job instance of the same entity knows nothing of that swap.
        assert await dest.inspect("job-1@2", ENTITY) == StagingCheck(False, False, None)

    async def test_inspect_after_discard(self, dest: Destination) -> None:
        await dest.prepare("job-1", ENTITY, FULL)
        await dest.discard("job-1", ENTITY)
        check = await dest.inspect("job-1", ENTITY)
        assert not check.staged and not check.swapped

    async def test_list_staging_names_each_job_instance(self, dest: Destination) -> None:
        assert list(await dest.list_staging()) == []
        await dest.prepare("job-a@1", ENTITY, FULL)
        await dest.prepare("job-b", "orders", FULL)
        await dest.prepare("job-c", ENTITY, INCR)  # incremental: no staging
        await full_sync(dest, "job-d", [page("x")])  # swapped: staging gone
        staged = sorted(await dest.list_staging(), key=lambda s: s.table)
        expected = sorted(
            [
                StagedTable(staging_table(ENTITY, "job-a@1"), "job-a@1", ENTITY),
                StagedTable(staging_table("orders", "job-b"), "job-b", "orders"),
            ],
            key=lambda s: s.table,
        )
        assert staged == expected

    async def test_drop_staging_drops_one_table_and_its_pending_mark(
        self, dest: Destination
    ) -> None:
        await full_sync(dest, "job-1", [page("a", hours=1)])
        for job in ("job-2", "job-3"):
            await dest.prepare(job, ENTITY, FULL)
            await dest.write_page(job, ENTITY, FULL, page("b", hours=5), at(5))
        (orphan,) = [s for s in await dest.list_staging() if s.job == "job-2"]
        await dest.drop_staging(orphan)
        assert [s.job for s in await dest.list_staging()] == ["job-3"]
        assert await staged(dest, "job-2") == {}
        assert set(await staged(dest, "job-3")) == {"b"}
        assert set(await live(dest)) == {"a"} and await dest.watermark(ENTITY) == at(1)
        with pytest.raises(DestinationError):
            await dest.finalize("job-2", ENTITY, FULL)
        await dest.finalize("job-3", ENTITY, FULL)
        assert await dest.watermark(ENTITY) == at(5)

    async def test_drop_staging_refuses_a_live_table(self, dest: Destination) -> None:
        await full_sync(dest, "job-1", [page("a")])
        with pytest.raises(DestinationError):
            await dest.drop_staging(StagedTable(ENTITY, "job-1", ENTITY))
        assert set(await live(dest)) == {"a"}


class CheckpointContract:
    """What a :class:`~statesync.destination.CheckpointingDestination` adds: the engine's
    checkpoint commits with its page, and goes when the job's data is swapped or dropped.
    Mix it into a :class:`DestinationContract` subclass."""

    @staticmethod
    def keeper(dest: Destination) -> CheckpointingDestination:
        assert isinstance(dest, CheckpointingDestination)
        return dest

    @pytest.mark.parametrize("mode", [FULL, INCR])
    async def test_checkpoint_commits_with_its_page_and_persists(
        self, make: DestinationFactory, mode: SyncMode
    ) -> None:
        dest = self.keeper(await make())
        assert await dest.read_checkpoint("job-1", ENTITY) is None
        await dest.prepare("job-1", ENTITY, mode)
        await dest.write_page("job-1", ENTITY, mode, page("a"), None, checkpoint='{"n":1}')
        await dest.write_page("job-1", ENTITY, mode, page("b"), None)
        assert await dest.read_checkpoint("job-1", ENTITY) == '{"n":1}'
        await dest.write_page("job-1", ENTITY, mode, page("c"), None, checkpoint='{"n":2}')
        await dest.aclose()
        again = self.keeper(await make())
        try:
            assert await again.read_checkpoint("job-1", ENTITY) == '{"n":2}'
            assert await again.read_checkpoint("job-2", ENTITY) is None
        finally:
            await again.aclose()

    async def test_a_refused_page_leaves_the_checkpoint_before_it(self, dest: Destination) -> None:
        keeper = self.keeper(dest)
        await keeper.prepare("job-1", ENTITY, FULL)
        await keeper.write_page("job-1", ENTITY, FULL, page("a"), None, fence=2, checkpoint="2")
        with pytest.raises(LeaseError):
            await keeper.write_page("job-1", ENTITY, FULL, page("b"), None, fence=1, checkpoint="1")
        assert await keeper.read_checkpoint("job-1", ENTITY) == "2"
        assert set(await staged(keeper, "job-1")) == {"a"}

    @pytest.mark.parametrize("mode", [FULL, INCR])
    async def test_finalize_drops_the_checkpoint(self, dest: Destination, mode: SyncMode) -> None:
        keeper = self.keeper(dest)
        await keeper.prepare("job-1", ENTITY, mode)
        await keeper.write_page("job-1", ENTITY, mode, page("a"), at(1), checkpoint="x")
        await keeper.finalize("job-1", ENTITY, mode)
        assert await keeper.read_checkpoint("job-1", ENTITY) is None

    async def test_discard_and_drop_staging_drop_the_checkpoint(self, dest: Destination) -> None:
        keeper = self.keeper(dest)
        for job in ("job-1", "job-2"):
            await keeper.prepare(job, ENTITY, FULL)
            await keeper.write_page(job, ENTITY, FULL, page("a"), None, checkpoint=job)
        await keeper.discard("job-1", ENTITY)
        assert await keeper.read_checkpoint("job-1", ENTITY) is None
        assert await keeper.read_checkpoint("job-2", ENTITY) == "job-2"
        (table,) = [t for t in await keeper.list_staging() if t.job == "job-2"]
        await keeper.drop_staging(table)
        assert await keeper.read_checkpoint("job-2", ENTITY) is None
