"""GraphQL offset lists walked anchored: inserts and deletes ahead of and behind the walk
lose nothing and repeat nothing, sequentially and with planned concurrent pages."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from statesync.connectors._anchored import Anchor, Ordering, absorb, ask
from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity
from statesync.errors import ConfigurationError, NoProgressError
from statesync.sandbox import MutationRule, Sandbox, SandboxConfig
from support.throughput import LoggingDestination, no_repeats, runner

# Slow: whole syncs served over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

ARTICLES = "graphql.articles"
KEY = SandboxConfig().api_key
QUERY = """
query Articles($limit: Int, $offset: Int) {
  articles(limit: $limit, offset: $offset) { id title createdAt }
}"""

# (delete where, insert where): the list is served oldest first, so the sandbox's
# "tail" (oldest records) is behind the walk and its "head" (newest) ahead of it.
CHURN: dict[str, dict[str, object]] = {
    "deletes behind": dict(delete=2, where="tail"),
    "deletes ahead": dict(delete=2, where="head"),
    "deletes anywhere": dict(delete=2, where="random"),
    "inserts behind": dict(insert=2, insert_where="tail"),
    "inserts among": dict(insert=2, insert_where="random"),
    "inserts ahead": dict(insert=3),
    "everything": dict(insert=2, insert_where="random", delete=2, where="random"),
}


def connect(sandbox: Sandbox, **entity: object) -> GraphQLConnector:
    options = {"order_field": "createdAt", **entity}
    return GraphQLConnector(
        sandbox.url + "/graphql",
        headers={"Authorization": f"Bearer {KEY}"},
        entities={"articles": GraphQLEntity(QUERY, ("articles",), **options)},  # type: ignore[arg-type]
    )


def ids(sandbox: Sandbox) -> frozenset[str]:
    return frozenset(r["id"] for r in sandbox.snapshot(ARTICLES))


def churn(sandbox: Sandbox, change: dict[str, object], every: Sequence[int]) -> None:
    for after in every:
        sandbox.faults.add_mutation(MutationRule(ARTICLES, after, **change))  # type: ignore[arg-type]


async def sync(sandbox: Sandbox, concurrency: int, **entity: object) -> tuple[bool, list[str]]:
    conn, dest = connect(sandbox, **entity), LoggingDestination()
    result = await runner(conn, dest, pages_in_flight=concurrency, page_size=10).sync(["articles"])
    await conn.aclose()
    if not result.ok:  # say why, so a failure on a loaded machine can be read
        print(result.entities)
    return result.ok, dest.written.get("articles", [])


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("change", list(CHURN))
async def test_churn_ahead_and_behind_loses_nothing_and_repeats_nothing(
    change: str, concurrency: int
) -> None:
    with Sandbox(SandboxConfig(sizes={ARTICLES: 300})) as sb:
        before = ids(sb)
        churn(sb, CHURN[change], range(2, 40, 3))
        ok, written = await sync(sb, concurrency)
        assert ok
        no_repeats(written)
        survivors = before & ids(sb)
        assert survivors <= set(written), f"lost {sorted(survivors - set(written))[:5]}"


async def test_plain_offsets_would_lose_records_under_deletes_behind() -> None:
    """The churn above has teeth: the documented opt-out (plain offsets) loses records."""
    with Sandbox(SandboxConfig(sizes={ARTICLES: 300})) as sb:
        before = ids(sb)
        churn(sb, CHURN["deletes behind"], range(2, 40, 3))
        ok, written = await sync(sb, 1, anchored=False)
        assert ok
        assert (before & ids(sb)) - set(written)


def test_an_offset_list_without_an_order_field_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="set order_field") as info:
        GraphQLConnector(
            "http://127.0.0.1:9/graphql", entities={"articles": GraphQLEntity(QUERY, "articles")}
        )
    assert "anchored=False" in str(info.value)
    with pytest.raises(ConfigurationError, match="do not select 'updatedAt'"):
        GraphQLConnector(
            "http://127.0.0.1:9/graphql",
            entities={"articles": GraphQLEntity(QUERY, "articles", order_field="updatedAt")},
        )


def test_a_server_ignoring_the_offset_is_stopped_within_three_answers() -> None:
    ordering = Ordering("n")
    first_page = [{"id": f"r{i}", "n": i} for i in range(10)]
    anchor, answers = Anchor(), 0
    with pytest.raises(NoProgressError, match="ignores the offset"):
        while answers < 10:
            asked = ask(anchor, 10, 100)
            answers += 1
            # Whatever the offset, the server answers the list's first records.
            anchor = absorb(anchor, asked, first_page[: asked.limit], True, ordering).anchor
    assert answers == 3
