"""GraphQL creation-time windows against the emulator, over real HTTP: the Relay
``tickets`` connection walked as concurrent windows, each with its own cursor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from statesync import PageRequest, RetryPolicy, SyncMode
from statesync._models import FetchState, Page, TimeWindow
from statesync.connector import Partitioning
from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity, _variables
from statesync.errors import ConfigurationError
from statesync.sandbox import MutationRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from support.throughput import LoggingDestination, StopAfter, runner

# Slow: concurrent windowed syncs over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

KEY = SandboxConfig().api_key
TICKETS = "graphql.tickets"
RETRY = RetryPolicy(attempts=8, initial_delay=0.01, jitter=0)
WINDOWED = """
query Tickets(
  $first: Int, $after: String, $since: DateTime, $createdGte: DateTime, $createdLt: DateTime
) {
  workspace(slug: "acme") {
    tickets(
      first: $first, after: $after, updatedSince: $since,
      createdGte: $createdGte, createdLt: $createdLt
    ) {
      nodes { id title revision createdAt updatedAt }
      pageInfo { hasNextPage endCursor }
      totalCount
    }
  }
}"""
TICKETS_ENTITY = GraphQLEntity(
    WINDOWED,
    ("workspace", "tickets"),
    updated_field="updatedAt",
    created_field="createdAt",
    window_variables=("createdGte", "createdLt"),
)


class Recording(GraphQLConnector):
    """Remembers the window of every request it sends."""

    def __init__(self, sandbox: Sandbox, entity: GraphQLEntity = TICKETS_ENTITY) -> None:
        super().__init__(
            sandbox.url + "/graphql",
            headers={"Authorization": f"Bearer {KEY}"},
            entities={"tickets": entity},
        )
        self.windows: list[TimeWindow | None] = []

    async def fetch_page(self, request: PageRequest) -> Page:
        self.windows.append(request.window)
        return await super().fetch_page(request)


def ids(sandbox: Sandbox) -> set[str]:
    return {r["id"] for r in sandbox.snapshot(TICKETS)}


def no_repeats(written: Sequence[str]) -> None:
    dupes = [i for i, n in Counter(written).items() if n > 1]
    assert not dupes, f"handed out twice: {dupes[:5]}"


def nested(windows: Sequence[TimeWindow | None]) -> set[TimeWindow]:
    """Windows bounded on both sides: only a split of a split makes one."""
    return {w for w in windows if w is not None and None not in (w.lower, w.upper)}


DENSE = 1  # created_step: records about 1.3 a second, every fourth pair sharing its second


# -- the emulator's window arguments ----------------------------------------------------


def test_emulator_filters_tickets_by_creation_window() -> None:
    query = """query($first: Int, $after: String, $gte: DateTime, $lt: DateTime) {
      workspace(slug: "acme") { tickets(first: $first, after: $after, createdGte: $gte,
        createdLt: $lt) { nodes { id createdAt } pageInfo { hasNextPage endCursor } } } }"""
    with Sandbox(SandboxConfig(sizes={TICKETS: 60})) as sb, httpx.Client() as http:
        rows = sorted(sb.snapshot(TICKETS), key=lambda r: (r["created"], r["id"]))

        def ask(**variables: Any) -> Any:
            answer = http.post(
                sb.url + "/graphql",
                json={"query": query, "variables": {"first": 100, **variables}},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            if "errors" in body:
                return body["errors"][0]["message"]
            return body["data"]["workspace"]["tickets"]

        gte, lt = rows[10]["createdAt"], rows[40]["createdAt"]
        inside = [r["id"] for r in rows if gte <= r["createdAt"] < lt]
        assert 25 <= len(inside) < 40
        # Oldest first: creation time, then id.
        assert [n["id"] for n in ask(gte=gte, lt=lt)["nodes"]] == inside
        assert [n["id"] for n in ask(gte=None, lt=None)["nodes"]] == [r["id"] for r in rows]
        # A cursor stays valid when the window narrows under it (cursors are positions).
        head = ask(first=15, gte=gte)
        rest = ask(after=head["pageInfo"]["endCursor"], gte=gte, lt=lt)
        assert [n["id"] for n in head["nodes"] + rest["nodes"]] == inside
        assert "createdGte is not an ISO 8601 date-time" in ask(gte="yesterday")


# -- windowed syncs ----------------------------------------------------------------------


async def test_windowed_sync_lands_every_record_once() -> None:
    with Sandbox(SandboxConfig(sizes={TICKETS: 1200})) as sb:
        sb.faults.configure(latency=0.01)
        conn = Recording(sb)
        assert conn.partitioning("tickets") == Partitioning(newest_first=False)
        dest = LoggingDestination()
        r = runner(conn, dest, pages_in_flight=4, page_size=25, max_iterations=10)
        result = await r.sync(["tickets"])
        await conn.aclose()
        assert result.ok
        written = dest.written["tickets"]
        no_repeats(written)
        assert set(written) == ids(sb)
        assert len(set(conn.windows)) >= 4, set(conn.windows)
        assert None not in conn.windows
        rec = await r.store.get_entity(result.job_id, "tickets")
        assert rec.records == 1200 and not rec.fetch_state.has_more


async def test_dense_windows_split_again_and_stay_exact() -> None:
    with Sandbox(SandboxConfig(sizes={TICKETS: 1500}, created_step=DENSE)) as sb:
        sb.faults.configure(latency=0.005)  # requests outlast landing: windows overlap
        created = [r["created"] for r in sb.snapshot(TICKETS)]
        assert len(set(created)) < len(created)  # ties on the second
        conn = Recording(sb)
        dest = LoggingDestination()
        r = runner(conn, dest, pages_in_flight=6, page_size=10, max_iterations=40)
        result = await r.sync(["tickets"])
        await conn.aclose()
        assert result.ok
        no_repeats(dest.written["tickets"])
        assert set(dest.written["tickets"]) == ids(sb)
        assert len(set(conn.windows)) >= 6
        assert nested(conn.windows), "no window split a second time"


async def test_resume_inside_a_split_window_is_exact() -> None:
    with Sandbox(SandboxConfig(sizes={TICKETS: 2000}, created_step=DENSE)) as sb:
        sb.faults.configure(latency=0.005)  # requests outlast landing: windows overlap
        store, dest = MemoryStateStore(), LoggingDestination()
        conn = Recording(sb)
        stop = StopAfter(700)
        policy = dict(pages_in_flight=4, page_size=20, max_iterations=100)
        stop.runner = runner(conn, dest, store=store, listeners=[stop], **policy)
        result = await stop.runner.sync(["tickets"])
        assert result.interrupted
        rec = await store.get_entity(result.job_id, "tickets")
        parts = rec.fetch_state.partitions
        assert len(parts) >= 2, parts
        inside = [p for p in parts if p.cursor and not p.done and p.upper is not None]
        assert inside, f"no bounded window stopped half-way: {parts}"
        assert rec.records == len(dest.written["tickets"])

        # A fresh process: a new connector, the checkpoint from the store.
        again = Recording(sb)
        second = runner(again, dest, store=store, **policy)
        assert (await second.run(result.job_id)).ok
        await conn.aclose()
        await again.aclose()
        assert again.windows[0] is not None
        no_repeats(dest.written["tickets"])
        assert set(dest.written["tickets"]) == ids(sb)


@pytest.mark.parametrize("where", ["head", "tail", "random"])
async def test_churn_during_a_windowed_sync_loses_nothing(where: str) -> None:
    with Sandbox(SandboxConfig(sizes={TICKETS: 900})) as sb:
        sb.faults.configure(latency=0.005)  # requests outlast landing: windows overlap
        before = ids(sb)
        for after in range(2, 60, 3):
            rule = MutationRule(TICKETS, after, insert=3, delete=2, update=1, where=where)  # type: ignore[arg-type]
            sb.faults.add_mutation(rule)
        conn = Recording(sb)
        dest = LoggingDestination()
        result = await runner(conn, dest, pages_in_flight=4, max_iterations=20).sync(["tickets"])
        await conn.aclose()
        assert result.ok
        written = dest.written["tickets"]
        no_repeats(written)
        survivors = before & ids(sb)
        assert survivors <= set(written), f"lost {sorted(survivors - set(written))[:5]}"
        assert len(set(conn.windows)) >= 3


async def test_incremental_windows_catch_old_records_changed_since() -> None:
    """``since`` is a change time here: the oldest window stays open below it."""
    with Sandbox(SandboxConfig(sizes={TICKETS: 600})) as sb:
        store, dest = MemoryStateStore(), LoggingDestination()
        conn = Recording(sb)
        policy = dict(pages_in_flight=3, page_size=20)
        assert (await runner(conn, dest, store=store, **policy).sync(["tickets"])).ok
        oldest = sb.snapshot(TICKETS)[-1]["id"]
        changed = sb.update(TICKETS, [oldest])
        new = sb.insert(TICKETS, 30)
        dest.written.clear()
        conn.windows.clear()
        result = await runner(conn, dest, store=store, **policy).sync(
            ["tickets"], mode=SyncMode.INCREMENTAL
        )
        await conn.aclose()
        assert result.ok
        written = dest.written["tickets"]
        no_repeats(written)
        assert set(changed) | set(new) <= set(written)
        assert len(written) < 100  # only what changed since the watermark
        assert all(w is not None and w.lower is not None for w in conn.windows)


async def test_without_concurrency_the_windowed_query_runs_unbounded() -> None:
    with Sandbox(SandboxConfig(sizes={TICKETS: 130})) as sb:
        conn = Recording(sb)
        dest = LoggingDestination()
        assert (await runner(conn, dest, pages_in_flight=1).sync(["tickets"])).ok
        await conn.aclose()
        assert set(conn.windows) == {None}
        no_repeats(dest.written["tickets"])
        assert set(dest.written["tickets"]) == ids(sb)


# -- configuration -----------------------------------------------------------------------


def configure(query: str, **kw: Any) -> GraphQLConnector:
    options: dict[str, Any] = {
        "created_field": "createdAt",
        "window_variables": ("createdGte", "createdLt"),
        **kw,
    }
    entity = GraphQLEntity(query, ("workspace", "tickets"), **options)
    return GraphQLConnector("http://localhost/graphql", entities={"tickets": entity})


RELAY = """
query Tickets($first: Int, $after: String{declared}) {{
  workspace(slug: "acme") {{
    tickets(first: $first, after: $after{bound}) {{
      nodes {{ id createdAt }}
      pageInfo {{ hasNextPage endCursor }}
    }}
  }}
}}"""


@pytest.mark.parametrize(
    ("declared", "bound", "expected"),
    [
        ("", "", ["$createdGte (lower (created >=)) is not declared", "$createdLt (upper"]),
        (
            ", $createdGte: DateTime, $createdLt: DateTime",
            ", createdGte: $createdGte",
            ["$createdLt (upper (created <)) is not bound to an argument of field workspace"],
        ),
        (
            ", $createdGte: DateTime!, $createdLt: DateTime",
            ", createdGte: $createdGte, createdLt: $createdLt",
            ["$createdGte (lower (created >=)) is declared non-null"],
        ),
    ],
    ids=["undeclared", "unbound", "non-null"],
)
def test_window_variables_are_checked_against_the_query(
    declared: str, bound: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as info:
        configure(RELAY.format(declared=declared, bound=bound))
    message = str(info.value)
    assert "GraphQL entity 'tickets'" in message and "window_variables" in message
    for part in expected:
        assert part in message
    assert "the field's arguments are first: $first, after: $after" in message


def test_window_configuration_errors() -> None:
    ok = RELAY.format(
        declared=", $createdGte: DateTime, $createdLt: DateTime",
        bound=", createdGte: $createdGte, createdLt: $createdLt",
    )
    assert configure(ok).partitioning("tickets") == Partitioning(newest_first=False)
    assert configure(ok, newest_first=True).partitioning("tickets") == Partitioning()
    assert configure(ok, window_variables=None).partitioning("tickets") is None
    with pytest.raises(ConfigurationError, match="window_variables need created_field"):
        configure(ok, created_field=None)
    with pytest.raises(ConfigurationError, match="must name two variables"):
        configure(ok, window_variables=("createdGte",))
    with pytest.raises(ConfigurationError, match="already the pagination or since variable"):
        configure(ok, window_variables=("createdGte", "after"))
    with pytest.raises(ConfigurationError, match=r"\$createdLt is set by the connector"):
        configure(ok, variables={"createdLt": "2024-01-01T00:00:00Z"})
    offset = (
        "query($limit: Int, $offset: Int, $createdGte: DateTime, $createdLt: DateTime) {"
        ' workspace(slug: "acme") { tickets(limit: $limit, offset: $offset,'
        " createdGte: $createdGte, createdLt: $createdLt) { id createdAt } } }"
    )
    with pytest.raises(ConfigurationError, match="need Relay cursor pagination"):
        configure(offset)


def test_window_bounds_are_sent_as_the_declared_type() -> None:
    query = RELAY.format(
        declared=", $from: Int, $to: DateTime, $since: DateTime",
        bound=", createdFrom: $from, createdTo: $to, updatedSince: $since",
    )
    conn = configure(query, window_variables=("from", "to"))
    configured = conn._configured["tickets"]
    lower, upper = 1_700_000_000, 1_700_003_600

    def sent(window: TimeWindow | None, **kw: Any) -> tuple[Any, Any]:
        request = PageRequest("tickets", FetchState(), 20, window=window, **kw)
        variables = _variables(configured, request, 20)
        return variables["from"], variables["to"]

    full = {"since": None, "mode": SyncMode.FULL}
    assert sent(TimeWindow(lower, upper), **full) == (lower, "2023-11-14T23:13:20Z")
    assert sent(TimeWindow(None, None), **full) == (None, None)
    assert sent(None, **full) == (None, None)
    since = datetime.fromtimestamp(lower, UTC)
    incremental = {"since": since, "mode": SyncMode.INCREMENTAL}
    # The oldest window starts at since: left open below (since is a change time).
    assert sent(TimeWindow(lower, upper), **incremental) == (None, "2023-11-14T23:13:20Z")
    later = lower + 60
    assert sent(TimeWindow(later, None), **incremental) == (later, None)
    naive = {"since": since.replace(tzinfo=None), "mode": SyncMode.INCREMENTAL}
    assert sent(TimeWindow(lower, None), **naive) == (None, None)
