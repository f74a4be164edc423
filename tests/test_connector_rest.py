"""The REST connector passes the shipped contract (statesync.testing) in every paginator
style, over real HTTP to the sandbox's REST API; offsets survive drift."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Literal

import pytest

from statesync import FetchState, PageRequest, SyncMode
from statesync.connectors._rest_config import rest_from_mapping
from statesync.connectors.rest import RESTConnector
from statesync.sandbox import FaultRule, MutationRule, Sandbox, SandboxConfig
from statesync.testing import Case, ConnectorContract, Source, SourceFactory, collect
from support.rest_styles import STYLES, TOTALS, rest_options

Where = Literal["head", "tail", "random"]
ENTITY = "rest.issues"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={ENTITY: 0})) as running:
        yield running


def connector(sandbox: Sandbox, style: str) -> RESTConnector:
    settings = rest_from_mapping(rest_options(sandbox.url, style))
    built = settings.connector({"REST_TOKEN": sandbox.config.api_key})
    assert isinstance(built, RESTConnector)
    return built


class RESTContract(ConnectorContract):
    style = "offset"

    @pytest.fixture
    async def contract_source(self, sandbox: Sandbox) -> AsyncIterator[SourceFactory]:
        opened: list[RESTConnector] = []

        async def build(case: Case) -> Source:
            sandbox.faults.clear_rules()
            sandbox.resize(ENTITY, case.size)
            snapshot = sandbox.snapshot(ENTITY)
            conn = connector(sandbox, self.style)
            opened.append(conn)
            prefix = f"/rest/{self.style}/issues"

            def fail_next(status: int) -> None:
                sandbox.faults.add_rule(FaultRule(path_prefix=prefix, nth=1, status=status))

            return Source(
                conn,
                "issues",
                frozenset(r["id"] for r in snapshot),
                case.page_size,
                updated={r["id"]: datetime.fromisoformat(r["updated_at"]) for r in snapshot},
                fail_next=fail_next,
            )

        yield build
        for conn in opened:
            await conn.aclose()


class TestOffsetTotalHeader(RESTContract):
    style = "offset"
    reports_total = True


class TestPageNumberTotal(RESTContract):
    style = "page"
    reports_total = True


class TestCursorInBody(RESTContract):
    style = "cursor"


class TestNextURL(RESTContract):
    style = "next"


class TestLinkHeader(RESTContract):
    style = "link"


class TestPostSearch(RESTContract):
    style = "search"
    reports_total = True


def test_every_style_is_covered() -> None:
    covered = {c.style for c in RESTContract.__subclasses__()}
    assert covered == set(STYLES)
    assert {c.style for c in RESTContract.__subclasses__() if c.reports_total} == TOTALS


@pytest.mark.parametrize("filtered", [True, False], ids=["reopen", "step_back"])
@pytest.mark.parametrize("where", ["tail", "head", "random"])
async def test_offset_drift_loses_nothing(sandbox: Sandbox, where: Where, filtered: bool) -> None:
    """Deletes behind the walk (``tail``: the oldest) shift every offset back, deletes
    ahead (``head``: the newest) do not; inserts land ahead of an oldest-first walk."""
    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 230)
    before = {r["id"] for r in sandbox.snapshot(ENTITY)}
    for n in range(2, 20, 3):
        sandbox.faults.add_mutation(
            MutationRule(
                ENTITY, after_request=len(sandbox.log()) + n, delete=4, insert=3, where=where
            )
        )
    options = rest_options(sandbox.url, "offset")
    if not filtered:  # no created >= bound: a shift steps the offset back instead
        for key in ("window_lower_param", "window_upper_param"):
            del options["entities"]["issues"][key]
    conn = rest_from_mapping(options).connector({"REST_TOKEN": sandbox.config.api_key})
    src = Source(conn, "issues", frozenset(before), 10)
    ids, _, states, _ = await collect(src, max_iterations=4)
    await conn.aclose()
    survivors = before & {r["id"] for r in sandbox.snapshot(ENTITY)}
    assert not [i for i, n in Counter(ids).items() if n > 1], "duplicated ids"
    assert survivors <= set(ids), f"lost {sorted(survivors - set(ids))[:5]}"
    if where != "head":
        key = "window" if filtered else "back"
        assert any(s.metadata.get(key) for s in states), "no shift was detected"


async def test_a_deep_offset_cap_moves_the_walk_into_windows(sandbox: Sandbox) -> None:
    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 120)
    options = rest_options(sandbox.url, "offset")
    options["entities"]["issues"]["paginator"]["max_offset"] = 35
    conn = rest_from_mapping(options).connector({"REST_TOKEN": sandbox.config.api_key})
    expected = frozenset(r["id"] for r in sandbox.snapshot(ENTITY))
    start = len(sandbox.log())
    ids, _, _, _ = await collect(Source(conn, "issues", expected, 10), max_iterations=5)
    await conn.aclose()
    assert sorted(ids) == sorted(expected)
    assert max(int(e.query["_start"]) for e in sandbox.log()[start:]) <= 35


async def test_errors_in_a_200_body_map_to_kinds(sandbox: Sandbox) -> None:
    from statesync import PageRequest, SyncMode
    from statesync.errors import ErrorKind, RateLimitedError

    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 20)
    options = rest_options(
        sandbox.url,
        "cursor",
        error_path="error",
        error_code_path="error.code",
        error_kinds={"slow_down": "rate_limited"},
    )
    conn = rest_from_mapping(options).connector({"REST_TOKEN": sandbox.config.api_key})
    body = '{"error": {"code": "slow_down", "message": "too many requests"}}'
    sandbox.faults.add_rule(
        FaultRule("/rest/cursor/", nth=1, status=200, body=body, headers={"Retry-After": "3"})
    )
    request = PageRequest("issues", FetchState(), 10, None, SyncMode.FULL)
    with pytest.raises(RateLimitedError) as caught:
        await conn.fetch_page(request)
    assert caught.value.kind is ErrorKind.RATE_LIMITED and caught.value.retry_after == 3
    assert "too many requests" in str(caught.value)
    assert len((await conn.fetch_page(request)).records) == 10
    await conn.aclose()


async def test_secrets_in_the_query_never_reach_errors(sandbox: Sandbox) -> None:
    from statesync import PageRequest, SyncMode
    from statesync.errors import TransientError

    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 20)
    options = rest_options(sandbox.url, "next")
    options["auth"] = {"type": "api_key", "token_env": "REST_TOKEN", "query_param": "api_key"}
    conn = rest_from_mapping(options).connector({"REST_TOKEN": sandbox.config.api_key})
    request = PageRequest("issues", FetchState(), 10, None, SyncMode.FULL)
    page = await conn.fetch_page(request)
    assert sandbox.config.api_key not in str(page.next_cursor)
    sandbox.faults.add_rule(FaultRule("/rest/next/", nth=1, status=503))
    follow = PageRequest("issues", FetchState(cursor=page.next_cursor), 10, None, SyncMode.FULL)
    with pytest.raises(TransientError) as caught:
        await conn.fetch_page(follow)
    assert sandbox.config.api_key not in str(caught.value)
    assert len((await conn.fetch_page(follow)).records) == 10
    await conn.aclose()


MINIMAL = {
    "link": 'path = "/link/issues"\npage_size_param = "per_page"\n'
    'paginator = { type = "link_header" }',
    "cursor": 'path = "/cursor/issues"\nrecords_path = "results"\n'
    'paginator = { type = "cursor", cursor_param = "after", cursor_path = "paging.next.after" }',
    "next": 'path = "/next/issues"\nrecords_path = "data"\n'
    'paginator = { type = "next_url", next_url_path = "next_page" }',
    "page": 'path = "/page/issues"\nrecords_path = "items"\npage_size_param = "per_page"\n'
    'paginator = { type = "page_number", total_path = "total" }',
    "offset": 'path = "/offset/issues"\ncreated_field = "created_at"\npage_size_param = "_limit"\n'
    'paginator = { type = "offset", offset_param = "_start", total_header = "X-Total-Count" }',
    "search": 'path = "/search/issues"\nmethod = "POST"\nrecords_path = "hits"\n'
    'created_field = "created_ms"\ntime_format = "epoch_ms"\n'
    'paginator = { type = "offset", has_more_path = "has_more" }',
}
LINES = {"link": 4, "cursor": 4, "next": 4, "page": 5, "offset": 5, "search": 7}


@pytest.mark.parametrize("style", sorted(MINIMAL))
async def test_the_readme_line_counts_are_complete_entities(sandbox: Sandbox, style: str) -> None:
    import tomllib

    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 57)
    table = f"[entities.issues]\n{MINIMAL[style]}\n"
    assert len(table.splitlines()) == LINES[style]
    doc = {"base_url": f"{sandbox.url}/rest", **tomllib.loads(table)}
    doc["auth"] = {"type": "bearer", "token_env": "T"}
    conn = rest_from_mapping(doc).connector({"T": sandbox.config.api_key})
    expected = frozenset(r["id"] for r in sandbox.snapshot(ENTITY))
    ids, _, _, _ = await collect(Source(conn, "issues", expected, 10), max_iterations=50)
    await conn.aclose()
    assert sorted(ids) == sorted(expected)


@pytest.mark.parametrize("where", ["tail", "random"])
async def test_planned_concurrent_offsets_survive_drift(sandbox: Sandbox, where: Where) -> None:
    from statesync import ChunkPolicy, PolicySet, RetryPolicy
    from statesync.adapters.local import LocalRunner
    from statesync.destinations.memory import MemoryDestination
    from statesync.stores.memory import MemoryStateStore

    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 260)
    before = {r["id"] for r in sandbox.snapshot(ENTITY)}
    for n in range(3, 30, 4):
        rule = MutationRule(ENTITY, len(sandbox.log()) + n, delete=3, insert=2, where=where)
        sandbox.faults.add_mutation(rule)
    options = rest_options(sandbox.url, "offset")
    for key in ("window_lower_param", "window_upper_param"):
        del options["entities"]["issues"][key]  # no windows: the engine plans offsets
    conn = rest_from_mapping(options).connector({"REST_TOKEN": sandbox.config.api_key})
    first = PageRequest("issues", FetchState(offset=0), 10, None, SyncMode.FULL)
    assert len(conn.plan_pages(first, 3)) == 3
    destination = MemoryDestination()
    chunk = ChunkPolicy(max_iterations=4, page_size=10, pages_in_flight=4)
    runner = LocalRunner(
        connector=conn,
        store=MemoryStateStore(),
        destination=destination,
        policies=PolicySet(retry=RetryPolicy(attempts=3), chunk=chunk),
        namespace="",  # the shared tables: this test is not about namespaces
    )
    start = len(sandbox.log())
    sandbox.faults.configure(latency=0.02)  # so requests in flight together overlap
    try:
        result = await runner.sync(["issues"])
    finally:
        sandbox.faults.configure(latency=0.0)
    await conn.aclose()
    assert result.ok, result
    got = set(destination.rows("issues"))
    survivors = before & {r["id"] for r in sandbox.snapshot(ENTITY)}
    assert survivors <= got, f"lost {sorted(survivors - got)[:5]}"
    log = sorted(sandbox.log()[start:], key=lambda e: e.started)
    overlapping = sum(1 for a, b in itertools.pairwise(log) if b.started < a.ended)
    assert overlapping > 0  # planned pages really were in flight together


def test_a_server_ignoring_the_offset_stops_the_walk() -> None:
    from statesync.connectors._rest_anchor import Anchor, absorb, key, plan
    from statesync.errors import NoProgressError

    first_page = [key(float(1000 + i), f"r{i}") for i in range(11)]  # whatever the offset
    anchor, processed = Anchor(), 0
    with pytest.raises(NoProgressError, match="ignores the offset"):
        for _ in range(10):
            step = plan(anchor, processed, 10, 100, None, False)
            keys = first_page[: step.limit]
            absorbed = absorb(step, keys, processed, False, "GET /offset/x")
            anchor, processed = absorbed.anchor, processed + len(absorbed.fresh)
    assert processed == 11  # the first page, and one record of the second: then it stops
