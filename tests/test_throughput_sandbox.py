"""Concurrency against the emulator: Close planned offsets, Stripe time windows, one budget."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from statesync import SyncMode, perform_sync_chunk
from statesync._budget import RateSettings
from statesync.adapters.local import LocalRunner
from statesync.connectors.close import CloseConnector
from statesync.connectors.stripe import StripeConnector
from statesync.sandbox import (
    CloseApi,
    MutationRule,
    RequestLogEntry,
    Sandbox,
    SandboxConfig,
    StripeApi,
)
from statesync.stores._redis_budget import RedisBudgets
from statesync.stores.memory import MemoryStateStore
from support.throughput import RETRY, LoggingDestination, StopAfter, no_repeats, runner

# Slow: whole syncs served over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

KEY = SandboxConfig().api_key


# -- Close: planned offsets ------------------------------------------------------------


@pytest.mark.parametrize("skip_cap", [250_000, 90])
@pytest.mark.parametrize("where", ["tail", "head", "random"])
async def test_close_planned_pages_under_churn_lose_nothing_repeat_nothing(
    where: str, skip_cap: int
) -> None:
    with Sandbox(
        SandboxConfig(sizes={"close.lead": 600}), plugins=[CloseApi(skip_cap=skip_cap)]
    ) as sb:
        before = frozenset(r["id"] for r in sb.snapshot("close.lead"))
        for after in range(2, 60, 3):
            rule = MutationRule("close.lead", after, insert=3, delete=2, update=1, where=where)  # type: ignore[arg-type]
            sb.faults.add_mutation(rule)
        conn = CloseConnector(KEY, base_url=sb.url + "/api/v1", skip_cap=skip_cap)
        dest = LoggingDestination()
        result = await runner(conn, dest, pages_in_flight=4).sync(["lead"])
        await conn.aclose()
        assert result.ok
        written = dest.written["lead"]
        no_repeats(written)
        survivors = before & frozenset(r["id"] for r in sb.snapshot("close.lead"))
        assert survivors <= set(written), f"lost {sorted(survivors - set(written))[:5]}"
        skips = [int(e.query["_skip"]) for e in sb.log()]
        assert max(skips) <= skip_cap
        if where == "tail":
            assert any("query" in e.query for e in sb.log()), "no shift was detected"


async def test_close_planned_pages_are_concurrent_and_exact_without_churn() -> None:
    with Sandbox(SandboxConfig(sizes={"close.lead": 500}), plugins=[CloseApi()]) as sb:
        sb.faults.configure(latency=0.01)
        conn = CloseConnector(KEY, base_url=sb.url + "/api/v1")
        dest = LoggingDestination()
        result = await runner(conn, dest, pages_in_flight=5, max_iterations=40).sync(["lead"])
        await conn.aclose()
        assert result.ok
        no_repeats(dest.written["lead"])
        assert set(dest.written["lead"]) == {r["id"] for r in sb.snapshot("close.lead")}
        log = sb.log()
        assert _most_overlapping(log) >= 3
        # 500 records, 20 a page, 19 new per overlapped page: 27 pages; at most the
        # planned pages past the end are wasted.
        assert len(log) <= 27 + 4


def _most_overlapping(log: Sequence[RequestLogEntry]) -> int:
    edges = sorted([(e.started, 1) for e in log] + [(e.ended, -1) for e in log])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


# -- Stripe: time windows --------------------------------------------------------------


def windows_in(log: Sequence[RequestLogEntry]) -> set[tuple[str | None, str | None]]:
    return {(e.query.get("created[gte]"), e.query.get("created[lt]")) for e in log}


async def test_stripe_partitions_split_and_land_every_record_once() -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 3000}), plugins=[StripeApi()]) as sb:
        sb.faults.configure(latency=0.01)
        conn = StripeConnector(KEY, base_url=sb.url)
        dest = LoggingDestination()
        r = runner(conn, dest, pages_in_flight=4, page_size=50, max_iterations=10)
        result = await r.sync(["customers"])
        await conn.aclose()
        assert result.ok
        written = dest.written["customers"]
        no_repeats(written)
        assert set(written) == {c["id"] for c in sb.snapshot("customers")}
        assert len(windows_in(sb.log())) >= 4
        assert _most_overlapping(sb.log()) >= 2
        rec = await r.store.get_entity(result.job_id, "customers")
        assert rec.records == 3000 and not rec.fetch_state.has_more


async def test_stripe_resumes_inside_a_split_window() -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 2000}), plugins=[StripeApi()]) as sb:
        store, dest = MemoryStateStore(), LoggingDestination()
        conn = StripeConnector(KEY, base_url=sb.url)
        stop = StopAfter(700)
        policy = dict(pages_in_flight=4, page_size=40, max_iterations=100)
        stop.runner = runner(conn, dest, store=store, listeners=[stop], **policy)
        result = await stop.runner.sync(["customers"])
        assert result.interrupted
        rec = await store.get_entity(result.job_id, "customers")
        parts = rec.fetch_state.partitions
        assert len(parts) >= 2, parts
        assert any(p.cursor and not p.done for p in parts), "no window stopped half-way"
        assert rec.records == len(dest.written["customers"])
        second = runner(conn, dest, store=store, **policy)
        assert (await second.run(result.job_id)).ok
        await conn.aclose()
        no_repeats(dest.written["customers"])
        assert set(dest.written["customers"]) == {c["id"] for c in sb.snapshot("customers")}


async def test_stripe_incremental_partitions_start_at_since() -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 900}), plugins=[StripeApi()]) as sb:
        store, dest = MemoryStateStore(), LoggingDestination()
        conn = StripeConnector(KEY, base_url=sb.url)
        policy = dict(pages_in_flight=3, page_size=30)

        assert (await runner(conn, dest, store=store, **policy).sync(["customers"])).ok
        sb.insert("customers", 75)
        dest.written.clear()
        again = runner(conn, dest, store=store, **policy)
        result = await again.sync(["customers"], mode=SyncMode.INCREMENTAL)
        await conn.aclose()
        assert result.ok
        newest = {c["id"] for c in sb.snapshot("customers")[:75]}
        assert newest <= set(dest.written["customers"])
        assert len(dest.written["customers"]) < 300  # only from the watermark on
        no_repeats(dest.written["customers"])


# -- one rate budget -------------------------------------------------------------------


def assert_within_limit(log: Sequence[RequestLogEntry], rate: float, burst: int) -> None:
    """No stretch of time saw more requests than ``rate`` allows plus ``burst``."""
    starts = sorted(e.started for e in log)
    for i, t in enumerate(starts):
        for j in range(i + 1, len(starts)):
            allowed = rate * (starts[j] - t) + burst
            assert j - i + 1 <= allowed + 1e-9, (
                f"{j - i + 1} requests in {starts[j] - t:.3f}s exceed {rate}/s + burst {burst}"
            )


SIZES = {"customers": 400, "invoices": 400, "charges": 400}


async def test_one_budget_keeps_three_entities_under_the_limit() -> None:
    rate, burst = 40.0, 4
    # The runner's own registry gives its three entities one budget.
    with Sandbox(SandboxConfig(sizes=SIZES), plugins=[StripeApi()]) as sb:
        sb.faults.configure(rate_limit=rate, burst=burst)
        conn = StripeConnector(KEY, base_url=sb.url)
        dest = LoggingDestination()
        r = runner(conn, dest, pages_in_flight=4, page_size=20, rate_limit=rate, rate_burst=burst)
        result = await r.sync(list(SIZES))
        await conn.aclose()
        assert result.ok
        log = sb.log()
        # The budget spaces the sends; on a loaded machine the event loop can still bunch
        # two arrivals at the server, which the engine rides out. Unshared budgets (or
        # none) send three entities' requests at several times the limit: hundreds of 429s.
        refused = [e for e in log if e.status == 429]
        assert len(refused) <= len(log) // 50, f"{len(refused)} of {len(log)} refused"
        assert_within_limit(log, rate, burst + 2 * len(refused))
        for entity in SIZES:
            no_repeats(dest.written[entity])


async def test_redis_budget_is_shared_by_separate_registries(
    redis_url: str, key_prefix: str
) -> None:
    """Two registries stand for two processes: one Redis budget paces them both."""
    rate, burst = 30.0, 3
    with Sandbox(SandboxConfig(sizes=SIZES), plugins=[StripeApi()]) as sb:
        sb.faults.configure(rate_limit=rate, burst=burst)
        workers = []
        for entities in (["customers", "invoices"], ["charges"]):
            registry = RedisBudgets.from_url(redis_url, prefix=key_prefix)
            conn = StripeConnector(KEY, base_url=sb.url)
            r = runner(
                conn, LoggingDestination(), pages_in_flight=3, rate_limit=rate, rate_burst=burst
            )
            workers.append((registry, conn, r, entities))

        async def work(
            registry: RedisBudgets, conn: StripeConnector, r: LocalRunner, ents: list[str]
        ) -> bool:
            job = await r.create_job(ents)
            budget = registry.get(conn.account, RateSettings(rate, burst))
            for entity in ents:
                while True:
                    out = await perform_sync_chunk(
                        job_id=job,
                        entity=entity,
                        connector=conn,
                        store=r.store,
                        destination=r.destination,
                        chunk_policy=r.chunk_policy_for(entity),
                        retry_policy=RETRY,
                        budget=budget,
                    )
                    if out.is_terminal:
                        break
                    if out.retry_in is not None:
                        # A bunched arrival refused (see below): wait, as a runner would.
                        assert out.waiting, out
                        await asyncio.sleep(out.retry_in)
            await conn.aclose()
            await registry.client.aclose()
            return True

        assert all(await asyncio.gather(*(work(*w) for w in workers)))
        log = sb.log()
        # As above: the shared budget spaces the sends; a loaded machine may still bunch an
        # arrival or two. Two unshared budgets would send at twice the limit.
        refused = [e for e in log if e.status == 429]
        assert len(refused) <= len(log) // 50, f"{len(refused)} of {len(log)} refused"
        assert_within_limit(log, rate, burst + 2 * len(refused))


# -- GraphQL offset lists: planned offsets too --------------------------------------------

ARTICLES_QUERY = """
query Articles($limit: Int, $offset: Int) {
  articles(limit: $limit, offset: $offset) { id title updatedAt createdAt }
}"""


async def test_graphql_offset_list_plans_pages_and_lands_them_once() -> None:
    from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity

    with Sandbox(SandboxConfig(sizes={"graphql.articles": 437})) as sb:
        sb.faults.configure(latency=0.01)
        conn = GraphQLConnector(
            sb.url + "/graphql",
            headers={"Authorization": f"Bearer {KEY}"},
            entities={
                "articles": GraphQLEntity(ARTICLES_QUERY, ("articles",), order_field="createdAt")
            },
        )
        dest = LoggingDestination()
        result = await runner(conn, dest, pages_in_flight=4, max_iterations=30).sync(["articles"])
        await conn.aclose()
        assert result.ok
        no_repeats(dest.written["articles"])
        assert set(dest.written["articles"]) == {r["id"] for r in sb.snapshot("graphql.articles")}
        assert _most_overlapping(sb.log()) >= 3
        assert len(sb.log()) <= 22 + 3  # 22 pages of 20; at most the planned ones past the end
