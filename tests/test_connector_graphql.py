"""The GraphQL connector against the emulator, over real HTTP through gql's httpx transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from statesync import ChunkPolicy, FetchState, PageRequest, RetryPolicy, SyncMode, SyncState
from statesync.adapters.local import LocalRunner
from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity
from statesync.destinations.memory import MemoryDestination
from statesync.errors import (
    APITimeoutError,
    AuthError,
    BadRequestError,
    ConfigurationError,
    ConnectorError,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
)
from statesync.sandbox import FaultRule, GraphQLApi, MutationRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from support.connector_contract import ConnectorContract, MakeSource, Source

TICKETS, ARTICLES = "graphql.tickets", "graphql.articles"
TICKET_FIELDS = "id title status revision updatedAt createdAt"
EDGES = f"""
query Tickets($first: Int, $after: String, $since: DateTime) {{
  workspace(slug: "acme") {{
    tickets(first: $first, after: $after, updatedSince: $since) {{
      edges {{ cursor node {{ {TICKET_FIELDS} }} }}
      pageInfo {{ hasNextPage endCursor }}
      totalCount
    }}
  }}
}}"""
NODES = f"""
query Tickets($slug: String!, $first: Int, $after: String, $since: DateTime) {{
  workspace(slug: $slug) {{
    tickets(first: $first, after: $after, updatedSince: $since) {{
      nodes {{ {TICKET_FIELDS} }}
      pageInfo {{ hasNextPage endCursor }}
    }}
  }}
}}"""
OFFSET = """
query Articles($limit: Int, $offset: Int, $changedSince: DateTime) {
  articles(limit: $limit, offset: $offset, updatedSince: $changedSince) {
    id title updatedAt createdAt
  }
}"""
SKIP_TAKE = "query($take: Int, $skip: Int) { articles(take: $take, skip: $skip) { id } }"

ENTITIES = {
    "tickets": GraphQLEntity(EDGES, ("workspace", "tickets"), updated_field="updatedAt"),
    "tickets_nodes": GraphQLEntity(
        NODES, "workspace.tickets", updated_field="updatedAt", variables={"slug": "acme"}
    ),
    "articles": GraphQLEntity(
        OFFSET,
        ("articles",),
        updated_field="updatedAt",
        since_variable="changedSince",
        order_field="createdAt",
    ),
    # Plain offsets, the documented opt-out: the contract suite covers both paths.
    "articles_skip": GraphQLEntity(SKIP_TAKE, ("articles",), anchored=False),
}
SERVED = {
    "tickets": TICKETS,
    "tickets_nodes": TICKETS,
    "articles": ARTICLES,
    "articles_skip": ARTICLES,
}


def connect(sandbox: Sandbox, token: str | None = None, **kw: Any) -> GraphQLConnector:
    key = token if token is not None else sandbox.config.api_key
    return GraphQLConnector(
        f"{sandbox.url}/graphql",
        entities=kw.pop("entities", ENTITIES),
        headers={"Authorization": f"Bearer {key}"},
        **kw,
    )


@pytest.fixture
async def sources() -> AsyncIterator[Callable[[str], MakeSource]]:
    opened: list[tuple[Sandbox, GraphQLConnector]] = []

    def for_entity(entity: str) -> MakeSource:
        async def make(size: int) -> Source:
            sandbox = Sandbox(SandboxConfig(sizes={SERVED[entity]: size})).start()
            conn = connect(sandbox)
            opened.append((sandbox, conn))
            ids = frozenset(r["id"] for r in sandbox.snapshot(SERVED[entity]))
            return Source(conn, entity, ids, ConnectorContract.page_size)

        return make

    yield for_entity
    for sandbox, conn in opened:
        await conn.aclose()
        sandbox.stop()


class TestRelayEdges(ConnectorContract):
    @pytest.fixture
    def make_source(self, sources: Callable[[str], MakeSource]) -> MakeSource:
        return sources("tickets")


class TestRelayNodes(ConnectorContract):
    @pytest.fixture
    def make_source(self, sources: Callable[[str], MakeSource]) -> MakeSource:
        return sources("tickets_nodes")


class TestOffset(ConnectorContract):
    @pytest.fixture
    def make_source(self, sources: Callable[[str], MakeSource]) -> MakeSource:
        return sources("articles")


class TestSkipTake(ConnectorContract):
    @pytest.fixture
    def make_source(self, sources: Callable[[str], MakeSource]) -> MakeSource:
        return sources("articles_skip")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={TICKETS: 30, ARTICLES: 25})) as running:
        yield running


@pytest.fixture
async def conn(sandbox: Sandbox) -> AsyncIterator[GraphQLConnector]:
    connector = connect(sandbox)
    yield connector
    await connector.aclose()


def request(
    entity: str = "tickets",
    state: FetchState | None = None,
    since: datetime | None = None,
    size: int = 10,
) -> PageRequest:
    mode = SyncMode.INCREMENTAL if since else SyncMode.FULL
    return PageRequest(entity, state or FetchState(), size, since, mode)


def test_styles_are_decided_at_configuration(sandbox: Sandbox) -> None:
    connector = connect(sandbox)
    styles = {e: connector.style(e).value for e in connector.entities()}
    assert styles == {
        "tickets": "relay",
        "tickets_nodes": "relay",
        "articles": "offset",
        "articles_skip": "offset",
    }
    bad = GraphQLEntity("query { articles { id } }", ("articles",))
    with pytest.raises(ConfigurationError, match="GraphQL entity 'broken': no pagination found"):
        connect(sandbox, entities={"broken": bad})


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, r"\$slug is required but has no value"),
        ({"slug": "acme", "after": "x"}, r"\$after is set by the connector"),
        ({"slug": "acme", "owner": "x"}, r"\$owner is not declared by the query"),
    ],
)
def test_configured_variables_are_checked(
    sandbox: Sandbox, variables: dict[str, str], message: str
) -> None:
    entity = GraphQLEntity(NODES, "workspace.tickets", variables=variables)
    with pytest.raises(ConfigurationError, match=message):
        connect(sandbox, entities={"t": entity})


def test_account_is_a_hash_of_url_and_token(sandbox: Sandbox) -> None:
    secret = "sk_test_account_secret_1234"
    account = connect(sandbox, token=secret).account
    assert account.startswith("graphql:") and secret not in account
    assert account == connect(sandbox, token=secret).account
    assert account != connect(sandbox, token=secret + "5").account


async def test_page_carries_style_total_and_timestamps(conn: GraphQLConnector) -> None:
    page = await conn.fetch_page(request())
    assert page.metadata == {"style": "relay"}
    assert page.total == 30 and page.has_more and page.next_cursor
    assert all(r.updated_at is not None and r.updated_at.tzinfo for r in page.records)
    offset_page = await conn.fetch_page(request("articles", FetchState(offset=20)))
    assert (len(offset_page.records), offset_page.next_offset) == (5, 25)
    assert offset_page.metadata is not None and not offset_page.has_more
    assert offset_page.metadata["style"] == "offset"


async def test_resume_refuses_a_checkpoint_of_another_style(conn: GraphQLConnector) -> None:
    state = FetchState(offset=10, metadata={"style": "offset"})
    with pytest.raises(BadRequestError, match="taken with offset pagination"):
        await conn.fetch_page(request("tickets", state))


# -- errors in a 200, typed and never an empty page -----------------------------------


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("Slow down", "RATE_LIMITED", RateLimitedError),
        ("API rate limit exceeded for installation", None, RateLimitedError),
        ("Token expired", "UNAUTHENTICATED", AuthError),
        ("Resource not accessible by integration", "FORBIDDEN", AuthError),
        ("Upstream timed out", "INTERNAL_SERVER_ERROR", TransientError),
        ("Service is temporarily unavailable", None, TransientError),
        ("Argument 'first' must be positive", "BAD_USER_INPUT", BadRequestError),
        ("Something is off", None, BadRequestError),
    ],
)
async def test_graphql_errors_in_a_200_are_typed(
    sandbox: Sandbox,
    conn: GraphQLConnector,
    message: str,
    code: str | None,
    expected: type[ConnectorError],
) -> None:
    sandbox.faults.add_rule(GraphQLApi.error_rule(1, message, code))
    with pytest.raises(ConnectorError) as info:
        await conn.fetch_page(request())
    assert type(info.value) is expected
    assert message in str(info.value) and info.value.status == 200
    assert "workspace.tickets" in str(info.value)  # names the request


async def test_rate_limit_error_carries_the_servers_delay(
    sandbox: Sandbox, conn: GraphQLConnector
) -> None:
    sandbox.faults.add_rule(GraphQLApi.error_rule(2, "Slow down", "RATE_LIMITED", retry_after=3))
    await conn.fetch_page(request())
    with pytest.raises(RateLimitedError) as info:
        await conn.fetch_page(request())
    assert info.value.retry_after == 3
    assert (await conn.fetch_page(request())).records  # the 3rd request is served again


async def test_http_429_uses_retry_after_header(sandbox: Sandbox, conn: GraphQLConnector) -> None:
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/graphql", nth=1, status=429, headers={"Retry-After": "7"})
    )
    with pytest.raises(RateLimitedError) as info:
        await conn.fetch_page(request())
    assert (info.value.retry_after, info.value.status) == (7, 429)


async def test_token_bucket_rate_limit(sandbox: Sandbox, conn: GraphQLConnector) -> None:
    sandbox.faults.configure(rate_limit=0.5, burst=1, retry_after=5)
    await conn.fetch_page(request())
    with pytest.raises(RateLimitedError) as info:
        await conn.fetch_page(request())
    assert info.value.retry_after == 5


async def test_partial_data_with_errors_is_not_a_page(
    sandbox: Sandbox, conn: GraphQLConnector
) -> None:
    empty = {"nodes": [], "edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
    body = {
        "data": {"workspace": {"tickets": empty}},
        "errors": [{"message": "Query timed out", "extensions": {"code": "TIMEOUT"}}],
    }
    sandbox.faults.add_rule(FaultRule("/graphql", nth=1, status=200, body=json.dumps(body)))
    with pytest.raises(TransientError, match="Query timed out"):
        await conn.fetch_page(request())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"workspace": {}}, "response data has no workspace.tickets"),
        ({}, "response data has no workspace (looking for the list at workspace.tickets)"),
        ({"workspace": None}, "response data has null at workspace"),
        (None, "the answer has neither data nor errors"),
    ],
)
async def test_data_missing_the_path_is_malformed(
    sandbox: Sandbox, conn: GraphQLConnector, data: object, message: str
) -> None:
    body = json.dumps({"data": data})
    sandbox.faults.add_rule(FaultRule("/graphql", nth=1, status=200, body=body))
    with pytest.raises(MalformedResponseError) as info:
        await conn.fetch_page(request())
    assert message in str(info.value)


@pytest.mark.parametrize("kind", ["malformed", "truncated", "missing_data"])
async def test_broken_bodies_are_malformed(
    sandbox: Sandbox, conn: GraphQLConnector, kind: str
) -> None:
    sandbox.faults.add_rule(FaultRule("/graphql", nth=1, kind=kind, status=200))  # type: ignore[arg-type]
    with pytest.raises(MalformedResponseError, match=r"POST /graphql workspace\.tickets"):
        await conn.fetch_page(request())


async def test_server_errors_and_timeouts_are_transient(
    sandbox: Sandbox, conn: GraphQLConnector
) -> None:
    sandbox.faults.add_rule(FaultRule("/graphql", nth=1, status=503))
    with pytest.raises(TransientError) as info:
        await conn.fetch_page(request())
    assert info.value.status == 503
    slow = connect(sandbox, timeout=0.05)
    sandbox.faults.configure(latency=0.3)
    with pytest.raises(APITimeoutError):
        await slow.fetch_page(request())
    await slow.aclose()


async def test_query_errors_are_bad_requests(sandbox: Sandbox) -> None:
    wrong_slug = EDGES.replace('slug: "acme"', 'slug: "nope"')
    unknown_field = EDGES.replace("status", "severity")
    entities = {
        "slug": GraphQLEntity(wrong_slug, "workspace.tickets"),
        "field": GraphQLEntity(unknown_field, "workspace.tickets"),
    }
    conn = connect(sandbox, entities=entities)
    with pytest.raises(BadRequestError, match="NOT_FOUND: Could not resolve to a Workspace"):
        await conn.fetch_page(request("slug"))
    with pytest.raises(BadRequestError, match="Cannot query field 'severity'") as info:
        await conn.fetch_page(request("field"))
    assert info.value.status == 400
    with pytest.raises(BadRequestError, match="unknown entity 'nope'"):
        await conn.fetch_page(request("nope"))
    await conn.aclose()


def _chain(error: BaseException | None) -> str:
    parts = []
    while error is not None:
        parts.append(f"{error!s} {error!r} {error.__dict__!r}")
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return " ".join(parts)


async def test_token_never_appears_in_errors(sandbox: Sandbox) -> None:
    secret = "sk_test_NEVERSHOWNNEVERSHOWN1234"
    wrong = connect(sandbox, token=secret)
    with pytest.raises(AuthError) as info:
        await wrong.fetch_page(request())
    assert secret not in _chain(info.value) and info.value.status == 401
    await wrong.aclose()
    # A server that echoes the token back in full: scrubbed from the message and chain.
    right = connect(sandbox)
    key = sandbox.config.api_key
    sandbox.faults.add_rule(GraphQLApi.error_rule(1, f"token {key} revoked", "UNAUTHENTICATED"))
    with pytest.raises(AuthError) as echoed:
        await right.fetch_page(request())
    assert "token *** revoked" in str(echoed.value)
    assert key not in _chain(echoed.value)
    await right.aclose()


# -- incremental and engine runs -------------------------------------------------------


@pytest.mark.parametrize(("entity", "served"), [("tickets", TICKETS), ("articles", ARTICLES)])
async def test_incremental_returns_only_updated_records(
    sandbox: Sandbox, conn: GraphQLConnector, entity: str, served: str
) -> None:
    newest = max(r["created"] for r in sandbox.snapshot(served))
    since = datetime.fromtimestamp(newest, UTC) + timedelta(seconds=1)
    changed = set(sandbox.update(served, 4, where="tail"))
    page = await conn.fetch_page(request(entity, since=since))
    assert {r.id for r in page.records} == changed and not page.has_more


def _runner(
    conn: GraphQLConnector, store: MemoryStateStore, dest: MemoryDestination
) -> LocalRunner:
    return LocalRunner(
        connector=conn,
        store=store,
        destination=dest,
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=7),
        retry_policy=RetryPolicy(attempts=4, initial_delay=0.001, max_delay=0.05, jitter=0),
        namespace="",  # the shared tables: this test is not about namespaces
    )


def _served(sandbox: Sandbox, entity: str, fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {r["id"]: {f: r[f] for f in fields} for r in sandbox.snapshot(entity)}


async def test_engine_run_is_exact_through_faults_and_mutations(
    sandbox: Sandbox, conn: GraphQLConnector
) -> None:
    faults = sandbox.faults
    faults.add_rule(GraphQLApi.error_rule(3, "Slow down", "RATE_LIMITED", retry_after=0.01))
    faults.add_rule(FaultRule("/graphql", nth=6, status=502))
    # Mid-sync: new records, edits and deletes of not-yet-read (newest) ones.
    faults.add_mutation(MutationRule(TICKETS, after_request=2, insert=3, update=2, delete=2))
    faults.add_mutation(MutationRule(ARTICLES, after_request=4, insert=2, delete=1))
    store, dest = MemoryStateStore(), MemoryDestination()
    result = await _runner(conn, store, dest).sync(["tickets", "articles"])
    assert result.ok, result
    fields = ("id", "title", "status", "revision", "updatedAt", "createdAt")
    assert dest.rows("tickets") == _served(sandbox, TICKETS, fields)
    served = _served(sandbox, ARTICLES, ("id", "title", "updatedAt", "createdAt"))
    assert dest.rows("articles") == served
    # Both entities share the request counter, so either may meet either fault.
    kinds = [
        t.error.kind
        for entity in ("tickets", "articles")
        for t in await store.history(result.job_id, entity)
        if t.error is not None
    ]
    assert sorted(kinds) == ["rate_limited", "transient"]


async def test_engine_incremental_run_picks_up_changes(
    sandbox: Sandbox, conn: GraphQLConnector
) -> None:
    store, dest = MemoryStateStore(), MemoryDestination()
    runner = _runner(conn, store, dest)
    assert (await runner.sync(["tickets"])).ok
    newest = max(r["updated"] for r in sandbox.snapshot(TICKETS))
    at_mark = {r["id"] for r in sandbox.snapshot(TICKETS) if r["updated"] == newest}
    changed = set(sandbox.update(TICKETS, 3, where="tail")) | set(sandbox.insert(TICKETS, 2))
    result = await runner.sync(["tickets"], mode=SyncMode.INCREMENTAL)
    assert result.ok
    rec = await store.get_entity(result.job_id, "tickets")
    assert rec.state is SyncState.COMPLETE
    # The high-water mark is inclusive: the newest records of the full run come again.
    assert rec.records == len(changed | at_mark)
    fields = ("id", "title", "status", "revision", "updatedAt", "createdAt")
    assert dest.rows("tickets") == _served(sandbox, TICKETS, fields)
