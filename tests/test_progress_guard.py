"""The engine's no-progress guard: walks that do not move end in a typed error, for any
connector (here: connectors whose API ignores what they send, and Stripe's over HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from statesync import ChunkPolicy, Page, PageRequest, Record, SyncState
from statesync.adapters.local import LocalRunner
from statesync.connector import BaseConnector, Partitioning
from statesync.connectors.stripe import StripeConnector
from statesync.sandbox import Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from support.throughput import FAST, LoggingDestination


def record(i: int, created: int = 1_700_000_000) -> Record:
    return Record(f"r{i:03d}", {"id": f"r{i:03d}"}, created_at=datetime.fromtimestamp(created, UTC))


class Deaf(BaseConnector):
    """An API that answers the first page whatever it is asked; ``how`` picks what the
    connector makes of it (a cursor from the page, an offset, nothing new at all)."""

    name = "deaf"

    def __init__(self, how: str) -> None:
        self.how = how
        self.calls = 0

    async def fetch_page(self, request: PageRequest) -> Page:
        self.calls += 1
        records = tuple(record(i) for i in range(5))
        if self.how == "cursor":  # the server ignores `after`: same page, same end cursor
            return Page(records, has_more=True, next_cursor=records[-1].id)
        if self.how == "offset":  # the server ignores the offset: same records each time
            return Page(records, True, next_offset=(request.state.offset or 0) + 5)
        # A connector that drops what it saw and flips between two positions.
        flip = "a" if request.state.metadata.get("at") != "a" else "b"
        return Page((), has_more=True, metadata={"at": flip}, request="GET /things (at=...)")


class OutOfWindow(BaseConnector):
    """Offers windows, but its API ignores them: every record comes, whatever the window."""

    name = "wide"

    def __init__(self) -> None:
        self.calls = 0

    def partitioning(self, entity: str) -> Partitioning:
        return Partitioning(newest_first=True)

    async def fetch_page(self, request: PageRequest) -> Page:
        self.calls += 1
        records = tuple(record(i, 1_700_000_000 + 1000 - i * 10) for i in range(50))
        return Page(records, has_more=True, next_cursor=f"c{self.calls}")


async def run(
    conn: BaseConnector, entity: str = "things", **policy: int
) -> tuple[SyncState, str, str]:
    """Sync ``entity`` once; the failed entity's state, error kind and message."""
    store = MemoryStateStore()
    runner = LocalRunner(
        connector=conn,
        store=store,
        destination=LoggingDestination(),
        chunk_policy=ChunkPolicy(**{"max_iterations": 50, "page_size": 5, **policy}),
        retry_policy=FAST,
    )
    result = await runner.sync([entity])
    rec = await store.get_entity(result.job_id, entity)
    assert rec.last_error is not None
    return rec.state, rec.last_error.kind, rec.last_error.message


@pytest.mark.parametrize(("how", "calls"), [("cursor", 2), ("offset", 2), ("cycle", 5)])
async def test_a_walk_that_does_not_move_fails_typed_within_a_few_requests(
    how: str, calls: int
) -> None:
    conn = Deaf(how)
    state, kind, message = await run(conn)
    assert (state, kind) == (SyncState.FAILED, "no_progress")
    assert "made no progress" in message and "things" in message
    # A prefetched request may be in flight when the guard stops the walk.
    assert conn.calls <= calls + 1
    if how == "cycle":
        assert "GET /things" in message  # the connector's own account of the request


async def test_records_outside_the_window_are_an_ignored_filter() -> None:
    conn = OutOfWindow()
    state, kind, message = await run(conn, pages_in_flight=3)
    assert (state, kind) == (SyncState.FAILED, "no_progress")
    assert "outside the window" in message and "ignored the window's filter" in message
    assert conn.calls <= 4


async def test_stripe_ignoring_starting_after_stops_after_two_pages() -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 40})) as sb:
        sb.faults.configure_walk(ignore_params=["starting_after"])
        conn = StripeConnector(sb.config.api_key, base_url=sb.url)
        state, kind, message = await run(conn, "customers", page_size=10)
        await conn.aclose()
        assert state is SyncState.FAILED  # and a last error (run asserts it)
        assert kind == "no_progress"
        assert "GET /v1/customers" in message
        assert len(sb.log()) <= 3


async def test_close_stops_when_the_server_ignores_the_offset() -> None:
    """Every answer is the list's first page: stopped after three (GraphQL offset lists
    share the check: tests/test_graphql_anchored.py)."""
    from statesync.connectors.close import CloseConnector

    with Sandbox(SandboxConfig(sizes={"close.lead": 200})) as sb:
        sb.faults.configure_walk(ignore_params=["_skip"])
        conn = CloseConnector(sb.config.api_key, base_url=sb.url + "/api/v1")
        state, kind, message = await run(conn, "lead", page_size=10)
        await conn.aclose()
        assert state is SyncState.FAILED  # and a last error (run asserts it)
        assert kind == "no_progress"
        assert "ignores the offset" in message
        assert "GET /api/v1/lead/" in message
        assert len(sb.log()) <= 4


def test_naive_creation_times_are_judged_as_their_timestamp_reads_them() -> None:
    """Windows are checked by comparing datetimes; a naive one cannot be, and is read as
    ``timestamp()`` reads it (local time), also after aware ones in the same page."""
    from statesync._models import FetchState, SyncMode, TimeWindow
    from statesync._progress import ProgressGuard
    from statesync.errors import NoProgressError

    lower = 1_700_000_000
    window = TimeWindow(lower, lower + 100)
    request = PageRequest("things", FetchState(), 5, None, SyncMode.FULL, window)
    aware = Record("a", {}, created_at=datetime.fromtimestamp(lower + 10, UTC))
    inside = Record("b", {}, created_at=datetime.fromtimestamp(lower + 50))  # naive
    outside = Record("c", {}, created_at=datetime.fromtimestamp(lower + 100))  # naive
    done = FetchState(has_more=False)
    ProgressGuard().check(request, Page((aware, inside), has_more=False), done)
    with pytest.raises(NoProgressError, match=r"record 'c' was created at 1700000100, outside"):
        ProgressGuard().check(request, Page((aware, inside, outside), has_more=False), done)
