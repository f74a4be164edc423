"""Stripe's cursor record deleted mid-sync: the walk re-positions and loses nothing.

The sandbox answers a deleted ``starting_after`` with the real API's 400
``resource_missing`` (walk mode ``vanished_cursors``); mutation rules delete the record
the last page ended with, at chosen requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from statesync import FetchState, PageRequest, SyncMode, SyncState, TimeWindow
from statesync.connectors.stripe import StripeConnector
from statesync.errors import BadRequestError, NoProgressError
from statesync.sandbox import MutationRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from support.throughput import LoggingDestination, StopAfter, no_repeats, runner

# Slow: whole syncs served over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

SIZE = 95


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"customers": SIZE}, created_step=7)) as running:
        running.faults.configure_walk(vanished_cursors=True)
        yield running


def ids(sandbox: Sandbox) -> frozenset[str]:
    return frozenset(r["id"] for r in sandbox.snapshot("customers"))


def connect(sandbox: Sandbox) -> StripeConnector:
    return StripeConnector(sandbox.config.api_key, base_url=sandbox.url)


def delete_cursor_after(sandbox: Sandbox, requests: Sequence[int]) -> None:
    for after in requests:
        sandbox.faults.add_mutation(MutationRule("customers", after, cursor=True))


def vanished(sandbox: Sandbox) -> int:
    return sum(1 for e in sandbox.log() if e.status == 400 and "starting_after" in e.query)


def assert_survivors_once(sandbox: Sandbox, before: frozenset[str], written: list[str]) -> None:
    no_repeats(written)
    survivors = before & ids(sandbox)
    assert survivors <= set(written), f"lost {sorted(survivors - set(written))[:5]}"
    assert set(written) <= before


@pytest.mark.parametrize(
    "points",
    [
        [1],  # right after the first page
        [3],  # at the chunk boundary: the checkpoint's cursor is gone for the next chunk
        [4, 7],
        [2, 5, 8],
        [1, 2, 3, 4, 5, 6],  # every page's cursor, one after another
    ],
)
async def test_deleted_cursor_mid_sync_every_survivor_once(
    sandbox: Sandbox, points: list[int]
) -> None:
    before = ids(sandbox)
    delete_cursor_after(sandbox, points)
    conn, dest = connect(sandbox), LoggingDestination()
    result = await runner(conn, dest, max_iterations=3, page_size=10).sync(["customers"])
    await conn.aclose()
    assert result.ok, result
    assert_survivors_once(sandbox, before, dest.written["customers"])
    # A delete due right after a 400 finds its record gone already: at most one each.
    assert 1 <= vanished(sandbox) <= len(points)
    # Each 400 was followed by one request going back to the vanished record's second.
    assert sum("created[lte]" in e.query for e in sandbox.log()) == vanished(sandbox)


async def test_deleted_cursor_inside_time_windows(sandbox: Sandbox) -> None:
    before = ids(sandbox)
    delete_cursor_after(sandbox, [2, 4, 6, 9])
    conn, dest = connect(sandbox), LoggingDestination()
    result = await runner(conn, dest, pages_in_flight=3, max_iterations=4, page_size=10).sync(
        ["customers"]
    )
    await conn.aclose()
    assert result.ok, result
    assert_survivors_once(sandbox, before, dest.written["customers"])
    assert vanished(sandbox) >= 1
    assert any("created[gte]" in e.query or "created[lt]" in e.query for e in sandbox.log())


async def test_deleted_cursor_right_after_a_resume(sandbox: Sandbox) -> None:
    before = ids(sandbox)
    store, dest, stop = MemoryStateStore(), LoggingDestination(), StopAfter(30)
    conn = connect(sandbox)
    first = runner(conn, dest, store=store, listeners=[stop], max_iterations=2, page_size=10)
    stop.runner = first
    job = await first.create_job(["customers"])
    interrupted = await first.run(job)
    assert interrupted.interrupted
    checkpoint = (await store.get_entity(job, "customers")).fetch_state
    assert checkpoint.cursor is not None and checkpoint.has_more
    sandbox.delete("customers", [checkpoint.cursor])
    result = await runner(conn, dest, store=store, max_iterations=2, page_size=10).run(job)
    await conn.aclose()
    assert result.ok, result
    assert (await store.get_entity(job, "customers")).state is SyncState.COMPLETE
    assert_survivors_once(sandbox, before, dest.written["customers"])
    # The resumed walk met the vanished cursor; the interrupted run's cancelled prefetch
    # (same cursor) may also have reached the server after the delete, and been refused.
    assert 1 <= vanished(sandbox) <= 2


async def test_a_checkpoint_without_the_cursors_second_is_still_a_bad_request(
    sandbox: Sandbox,
) -> None:
    first = sandbox.snapshot("customers")[3]["id"]
    sandbox.delete("customers", [first])
    conn = connect(sandbox)
    request = PageRequest("customers", FetchState(cursor=first), 10, None, SyncMode.FULL)
    with pytest.raises(BadRequestError, match="no longer exists"):
        await conn.fetch_page(request)
    await conn.aclose()


# -- a created filter the server ignores ------------------------------------------------


async def test_ignored_created_filter_is_a_typed_error_on_the_first_page(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.configure_walk(ignore_params=["created"])
    newest = max(r["created"] for r in sandbox.snapshot("customers"))
    conn = connect(sandbox)
    window_state = FetchState()
    request = PageRequest(
        "customers", window_state, 10, None, SyncMode.FULL, TimeWindow(None, newest - 100)
    )
    with pytest.raises(NoProgressError) as info:
        await conn.fetch_page(request)
    assert "created[lt]" in str(info.value) and "/v1/customers" in str(info.value)
    assert len(sandbox.log()) == 1
    await conn.aclose()


async def test_ignored_created_filter_fails_the_windowed_walk_within_a_few_requests(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.configure_walk(ignore_params=["created"])
    conn, dest = connect(sandbox), LoggingDestination()
    store = MemoryStateStore()
    result = await runner(conn, dest, store=store, pages_in_flight=3, page_size=10).sync(
        ["customers"]
    )
    await conn.aclose()
    assert not result.ok
    rec = await store.get_entity(result.job_id, "customers")
    assert rec.state is SyncState.FAILED
    assert rec.last_error is not None and rec.last_error.kind == "no_progress"
    assert "created[lt]" in rec.last_error.message
    # The first page splits the window; the far window's first answer shows the filter
    # was ignored. Only requests already in flight (up to pages_in_flight=3 windows, each
    # with its next page prefetched) come on top.
    assert len(sandbox.log()) <= 1 + 2 * 3
