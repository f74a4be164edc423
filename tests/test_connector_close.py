"""The Close connector against the Close emulator, over real HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime

import httpx
import pytest

from statesync import ChunkPolicy, FetchState, PageRequest, SyncMode, SyncState
from statesync.adapters.local import LocalRunner
from statesync.connectors.close import CloseConnector, parse_rate_limit
from statesync.destinations.memory import MemoryDestination
from statesync.errors import (
    AuthError,
    BadRequestError,
    ConfigurationError,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
)
from statesync.sandbox import (
    CloseApi,
    CloseRateLimit,
    FaultRule,
    MutationRule,
    Sandbox,
    SandboxConfig,
)
from statesync.stores.memory import MemoryStateStore
from support.connector_contract import ConnectorContract, MakeSource, Source, assert_exact, collect

KEY = SandboxConfig().api_key
LEADS = "/api/v1/lead/"
OWNERS = ("lead", "contact", "opportunity", "activity", "shared")


def start(sizes: Mapping[str, int], **plugin: object) -> Sandbox:
    return Sandbox(SandboxConfig(sizes=sizes), plugins=[CloseApi(**plugin)]).start()  # type: ignore[arg-type]


def connect(sandbox: Sandbox, **kw: object) -> CloseConnector:
    return CloseConnector(KEY, base_url=sandbox.url + "/api/v1", **kw)  # type: ignore[arg-type]


def ids_of(sandbox: Sandbox, entity: str) -> frozenset[str]:
    return frozenset(r["id"] for r in sandbox.snapshot(entity))


def request(entity: str = "lead", **kw: object) -> PageRequest:
    return PageRequest(
        entity,
        kw.get("state", FetchState()),  # type: ignore[arg-type]
        kw.get("page_size", 10),  # type: ignore[arg-type]
        kw.get("since"),  # type: ignore[arg-type]
        kw.get("mode", SyncMode.FULL),  # type: ignore[arg-type]
    )


@pytest.fixture(params=["lead", "activity_call", "user"])
async def make_source(request: pytest.FixtureRequest) -> AsyncIterator[MakeSource]:
    entity: str = request.param
    opened: list[tuple[Sandbox, CloseConnector]] = []

    async def make(size: int) -> Source:
        sandbox = start({f"close.{entity}": size})
        conn = connect(sandbox, entities=[entity])
        opened.append((sandbox, conn))
        ids = ids_of(sandbox, f"close.{entity}")
        return Source(conn, entity, ids, ConnectorContract.page_size)

    yield make
    for sandbox, conn in opened:
        await conn.aclose()
        sandbox.stop()


class TestCloseConnector(ConnectorContract):
    pass


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sizes = {"close.lead": 30, "close.opportunity": 30, "close.activity_call": 30}
    with Sandbox(SandboxConfig(sizes=sizes), plugins=[CloseApi()]) as running:
        yield running


@pytest.fixture
async def conn(sandbox: Sandbox) -> AsyncIterator[CloseConnector]:
    connector = connect(sandbox)
    yield connector
    await connector.aclose()


# -- deep offsets: date windows past the _skip cap --------------------------------------


def windows(states: list[FetchState]) -> set[str]:
    return {s.metadata["window"] for s in states if s.metadata.get("window")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("entity", "size", "cap", "page_size"),
    [
        ("lead", 3000, 500, 7),  # windows through the lead search query
        ("lead", 3000, 500, 100),
        ("opportunity", 1000, 100, 30),  # date_created__gte
        ("activity_call", 1000, 100, 30),  # date_created__gt, a microsecond earlier
    ],
)
async def test_sync_past_the_skip_cap_returns_every_record_once(
    entity: str, size: int, cap: int, page_size: int
) -> None:
    sandbox = start({f"close.{entity}": size}, skip_cap=cap)
    conn = connect(sandbox, skip_cap=cap)
    expected = ids_of(sandbox, f"close.{entity}")
    ids, _, states = await collect(Source(conn, entity, expected, page_size), 50)
    assert_exact(ids, expected)
    assert len(windows(states)) >= 5
    assert max(int(e.query["_skip"]) for e in sandbox.log()) <= cap
    assert all(e.status == 200 for e in sandbox.log())
    # Some window starts on a date_created shared by two records, one on each side.
    per_date = Counter(r["date_created"] for r in sandbox.snapshot(f"close.{entity}"))
    assert any(per_date[w] > 1 for w in windows(states))
    await conn.aclose()
    sandbox.stop()


@pytest.mark.slow
async def test_resume_from_states_saved_inside_date_windows() -> None:
    sandbox = start({"close.lead": 1200}, skip_cap=200)
    expected = ids_of(sandbox, "close.lead")
    conn = connect(sandbox, skip_cap=200)
    ids, _, states = await collect(Source(conn, "lead", expected, 30), 4)
    await conn.aclose()
    inside = [s for s in states if s.metadata.get("window") and s.has_more]
    assert inside, "the sync never entered a date window"
    # Window openings (offset 0, tie group pending) and a spread of mid-window states.
    picked = [s for s in inside if (s.offset or 0) <= 31] + inside[::7]
    for state in picked:
        fresh = connect(sandbox, skip_cap=200)
        tail, _, _ = await collect(Source(fresh, "lead", expected, 30), 4, start=state)
        assert_exact(ids[: state.total_processed] + tail, expected)
        await fresh.aclose()
    sandbox.stop()


# -- data changing mid-sync ------------------------------------------------------------


def churn(sandbox: Sandbox, where: str) -> None:
    """Inserts and deletes every few requests while the sync runs."""
    for after in range(2, 60, 3):
        rule = MutationRule("close.lead", after, insert=3, delete=2, update=1, where=where)  # type: ignore[arg-type]
        sandbox.faults.add_mutation(rule)


@pytest.mark.parametrize("skip_cap", [250_000, 90])
@pytest.mark.parametrize("where", ["tail", "head", "random"])
async def test_data_changing_mid_sync_loses_nothing_and_repeats_nothing(
    where: str, skip_cap: int
) -> None:
    # The connector reads oldest first, so the sandbox's "tail" (its oldest records)
    # is the head of the connector's ordering: deleting there shifts every offset.
    sandbox = start({"close.lead": 600}, skip_cap=skip_cap)
    before = ids_of(sandbox, "close.lead")
    churn(sandbox, where)
    conn = connect(sandbox, skip_cap=skip_cap)
    ids, _, _ = await collect(Source(conn, "lead", before, 20), 5)
    survivors = before & ids_of(sandbox, "close.lead")
    assert not [i for i, n in Counter(ids).items() if n > 1]
    assert survivors <= set(ids), f"lost {sorted(survivors - set(ids))[:5]}"
    if where == "tail":
        assert any("query" in e.query for e in sandbox.log()), "no shift was detected"
    await conn.aclose()
    sandbox.stop()


def test_naive_offset_paging_would_lose_records_under_the_same_churn() -> None:
    """The scenario above has teeth: plain ``_skip += _limit`` skips records."""
    sandbox = start({"close.lead": 600})
    before = ids_of(sandbox, "close.lead")
    churn(sandbox, "tail")
    seen: set[str] = set()
    with httpx.Client(base_url=sandbox.url, auth=(KEY, "")) as http:
        skip, more = 0, True
        while more:
            params: dict[str, str | int] = {
                "_skip": skip,
                "_limit": 20,
                "_order_by": "date_created",
            }
            page = http.get(LEADS, params=params).json()
            seen.update(r["id"] for r in page["data"])
            skip, more = skip + 20, page["has_more"]
    assert (before & ids_of(sandbox, "close.lead")) - seen
    sandbox.stop()


# -- the small lists, through the engine ------------------------------------------------


@pytest.mark.parametrize("mode", [SyncMode.FULL, SyncMode.INCREMENTAL])
async def test_custom_fields_and_users_sync_through_the_engine(mode: SyncMode) -> None:
    entities = [f"custom_field_{owner}" for owner in OWNERS] + ["user"]
    sandbox = start({f"close.{e}": 13 for e in entities})
    conn = connect(sandbox, entities=entities)
    store, dest = MemoryStateStore(), MemoryDestination()
    runner = LocalRunner(
        connector=conn,
        store=store,
        destination=dest,
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=5),
        namespace="",  # the shared tables: this test is not about namespaces
    )
    await runner.sync(entities)  # a first full sync gives the incremental one a watermark
    result = await runner.sync(entities, mode=mode)
    assert result.ok, result
    for entity in entities:
        assert set(dest.rows(entity)) == ids_of(sandbox, f"close.{entity}")
        history = await store.history(result.job_id, entity)
        assert history[-1].dest is SyncState.COMPLETE
        # Always full: no date filter even in an incremental job.
    assert not any(k.startswith("date_") or k == "query" for e in sandbox.log() for k in e.query)
    await conn.aclose()
    sandbox.stop()


# -- incremental filters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "field", "param"),
    [
        ("opportunity", "date_updated", "date_updated__gte"),
        ("lead", "date_updated", "query"),
        ("activity_call", "date_created", "date_created__gt"),
    ],
)
async def test_incremental_filters_and_sorts_by_date(
    sandbox: Sandbox, conn: CloseConnector, entity: str, field: str, param: str
) -> None:
    rows = sandbox.snapshot(f"close.{entity}")
    pivot = sorted(r[field] for r in rows)[12]
    since = datetime.fromisoformat(pivot)
    page = await conn.fetch_page(
        request(entity, since=since, mode=SyncMode.INCREMENTAL, page_size=50)
    )
    assert {r.id for r in page.records} == {r["id"] for r in rows if r[field] >= pivot}
    dates = [r.data[field] for r in page.records]
    assert dates == sorted(dates)
    query = sandbox.log()[-1].query
    assert param in query and query["_order_by"] == field
    # The watermark is the filtered field, so the next run starts where this one ended.
    assert page.max_watermark() == datetime.fromisoformat(max(dates))


async def test_total_results_feeds_page_total(conn: CloseConnector) -> None:
    page = await conn.fetch_page(request("lead"))
    assert page.total == 30


async def test_fields_always_include_what_paging_needs(sandbox: Sandbox) -> None:
    conn = connect(sandbox, fields={"lead": ["display_name"]})
    page = await conn.fetch_page(request("lead"))
    assert set(page.records[0].data) == {"display_name", "id", "date_created", "date_updated"}
    assert sandbox.log()[-1].query["_fields"] == "display_name,id,date_created,date_updated"
    await conn.aclose()


def test_unknown_entities_are_refused_up_front() -> None:
    with pytest.raises(ConfigurationError, match="activity_call"):
        CloseConnector(KEY, entities=["activity/call"])


# -- rate limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"RateLimit": "limit=60, remaining=0, reset=2.5", "Retry-After": "3"}, 3.0),
        ({"RateLimit": "limit=60; remaining=0; reset=4.25"}, 4.25),
        ({"Retry-After": "7"}, 7.0),
        ({}, 1.0),  # the emulator's own RateLimit header on an injected 429
    ],
)
async def test_429_is_rate_limited_with_the_servers_delay(
    sandbox: Sandbox, conn: CloseConnector, headers: dict[str, str], delay: float
) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix=LEADS, nth=1, status=429, headers=headers))
    with pytest.raises(RateLimitedError) as info:
        await conn.fetch_page(request())
    assert info.value.retry_after == delay
    assert len(sandbox.log()) == 1


async def test_the_fault_injectors_rate_limiter_is_a_rate_limited_error(
    sandbox: Sandbox, conn: CloseConnector
) -> None:
    sandbox.faults.configure(rate_limit=0.5, burst=1, retry_after=2)
    await conn.fetch_page(request())
    with pytest.raises(RateLimitedError) as info:
        await conn.fetch_page(request())
    assert info.value.retry_after == 2


@pytest.mark.parametrize(
    "header",
    [
        "limit=100, remaining=7, reset=1.5",
        "limit=100;remaining=7;reset=1.5",
        ' limit = 100 ; remaining="7" , reset=1.5 ',
    ],
)
def test_rate_limit_header_parses_with_either_separator(header: str) -> None:
    parsed = parse_rate_limit(header)
    assert parsed is not None
    assert (parsed.limit, parsed.remaining, parsed.reset) == (100, 7, 1.5)


@pytest.mark.parametrize("header", [None, "", "garbage", "limit=x, reset=-1, remaining=nan"])
def test_unusable_rate_limit_headers_are_ignored(header: str | None) -> None:
    assert parse_rate_limit(header) is None


@pytest.mark.slow
async def test_remaining_zero_waits_until_reset_before_the_next_request() -> None:
    # The connector reports each answer's RateLimit header; the account's budget (the
    # default one, learning the limit) waits for the reset once nothing remains.
    sandbox = start({"close.lead": 60}, rate_limit=CloseRateLimit(limit=3, window=1.0))
    conn = connect(sandbox, entities=["lead"])
    runner = LocalRunner(
        connector=conn,
        store=MemoryStateStore(),
        destination=MemoryDestination(),
        chunk_policy=ChunkPolicy(page_size=10),
        namespace="",  # the shared tables: this test is not about namespaces
    )
    result = await runner.sync(["lead"])
    log = sandbox.log()
    assert result.entities[0].state is SyncState.COMPLETE
    assert [e.status for e in log] == [200] * len(log)  # paced, never refused
    assert len(log) >= 6
    for first, fourth in zip(log, log[3:], strict=False):
        # Never four requests in one window: the fourth waited for the reset.
        assert fourth.started - first.started >= 1.0 - 0.05
    await conn.aclose()
    sandbox.stop()


# -- errors ---------------------------------------------------------------------------------


async def test_wrong_key_is_an_auth_error_that_never_shows_the_key(sandbox: Sandbox) -> None:
    secret = "api_WRONGWRONGWRONG1234.secretpart"
    conn = CloseConnector(secret, base_url=sandbox.url + "/api/v1")
    with pytest.raises(AuthError) as info:
        await conn.fetch_page(request())
    assert info.value.status == 401
    for text in (str(info.value), repr(info.value.__dict__), conn.account):
        assert secret not in text and "secretpart" not in text
    assert conn.account.startswith("close:")
    await conn.aclose()


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ('{"error": "Invalid _order_by"}', "Invalid _order_by"),
        ('{"errors": [], "field-errors": {"query": "Bad clause"}}', "query: Bad clause"),
    ],
)
async def test_400_is_a_bad_request_with_closes_message(
    sandbox: Sandbox, conn: CloseConnector, body: str, shown: str
) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix=LEADS, nth=1, status=400, body=body))
    with pytest.raises(BadRequestError, match=shown):
        await conn.fetch_page(request())


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(sandbox: Sandbox, conn: CloseConnector, status: int) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix=LEADS, nth=1, status=status))
    with pytest.raises(TransientError):
        await conn.fetch_page(request())


@pytest.mark.parametrize("kind", ["malformed", "truncated", "missing_data"])
async def test_malformed_bodies_are_typed_and_name_the_request(
    sandbox: Sandbox, conn: CloseConnector, kind: str
) -> None:
    rule = FaultRule(path_prefix=LEADS, nth=1, kind=kind, status=200)  # type: ignore[arg-type]
    sandbox.faults.add_rule(rule)
    with pytest.raises(MalformedResponseError) as info:
        await conn.fetch_page(request())
    message = str(info.value)
    assert "GET /api/v1/lead/" in message and "_skip=0" in message and KEY not in message


async def test_records_without_dates_are_malformed(sandbox: Sandbox, conn: CloseConnector) -> None:
    body = '{"has_more": false, "data": [{"id": "lead_1", "date_created": "yesterday"}]}'
    sandbox.faults.add_rule(FaultRule(path_prefix=LEADS, nth=1, status=200, body=body))
    with pytest.raises(MalformedResponseError, match="ISO-8601"):
        await conn.fetch_page(request())


async def test_network_failure_is_transient() -> None:
    sandbox = start({"close.lead": 1})
    url = sandbox.url
    sandbox.stop()
    conn = CloseConnector(KEY, base_url=url + "/api/v1")
    with pytest.raises(TransientError):
        await conn.fetch_page(request())
    await conn.aclose()
