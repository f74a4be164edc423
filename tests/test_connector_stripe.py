"""The Stripe connector against the emulator, over real HTTP through the real SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from statesync import FetchState, PageRequest, SyncMode
from statesync.connectors.stripe import StripeConnector
from statesync.errors import AuthError, BadRequestError, MalformedResponseError, RateLimitedError
from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from support.connector_contract import ConnectorContract, MakeSource, Source


@pytest.fixture
async def make_source() -> AsyncIterator[MakeSource]:
    opened: list[tuple[Sandbox, StripeConnector]] = []

    async def make(size: int) -> Source:
        sandbox = Sandbox(SandboxConfig(sizes={"customers": size})).start()
        conn = StripeConnector(sandbox.config.api_key, base_url=sandbox.url)
        opened.append((sandbox, conn))
        ids = frozenset(r["id"] for r in sandbox.snapshot("customers"))
        return Source(conn, "customers", ids, ConnectorContract.page_size)

    yield make
    for sandbox, conn in opened:
        await conn.aclose()
        sandbox.stop()


class TestStripeConnector(ConnectorContract):
    pass


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"customers": 30})) as running:
        yield running


def request(
    entity: str = "customers",
    cursor: str | None = None,
    *,
    since: datetime | None = None,
    mode: SyncMode = SyncMode.FULL,
) -> PageRequest:
    return PageRequest(entity, FetchState(cursor=cursor), 10, since, mode)


async def test_wrong_key_is_an_auth_error_that_never_shows_the_key(sandbox: Sandbox) -> None:
    secret = "sk_test_WRONGWRONGWRONG1234"
    conn = StripeConnector(secret, base_url=sandbox.url)
    with pytest.raises(AuthError) as info:
        await conn.fetch_page(request())
    assert secret not in str(info.value) and secret not in repr(info.value.__dict__)
    await conn.aclose()


async def test_429_maps_to_rate_limited_with_the_servers_delay(sandbox: Sandbox) -> None:
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/customers", nth=1, status=429, headers={"Retry-After": "7"})
    )
    conn = StripeConnector(sandbox.config.api_key, base_url=sandbox.url)
    with pytest.raises(RateLimitedError) as info:
        await conn.fetch_page(request())
    assert info.value.retry_after == 7
    assert len(sandbox.log()) == 1  # the SDK did not retry on its own
    await conn.aclose()


@pytest.mark.parametrize("kind", ["malformed", "truncated", "missing_data"])
async def test_malformed_bodies_are_typed_and_name_the_request(sandbox: Sandbox, kind: str) -> None:
    sandbox.faults.add_rule(
        FaultRule(
            path_prefix="/v1/customers",
            nth=1,
            kind=kind,  # type: ignore[arg-type]
            status=200,
        )
    )
    conn = StripeConnector(sandbox.config.api_key, base_url=sandbox.url)
    with pytest.raises(MalformedResponseError) as info:
        await conn.fetch_page(request())
    assert "/v1/customers" in str(info.value)
    await conn.aclose()


async def test_unknown_cursor_is_a_bad_request(sandbox: Sandbox) -> None:
    conn = StripeConnector(sandbox.config.api_key, base_url=sandbox.url)
    with pytest.raises(BadRequestError):
        await conn.fetch_page(request(cursor="cus_doesnotexist"))
    await conn.aclose()


async def test_incremental_filters_by_created(sandbox: Sandbox) -> None:
    rows = sandbox.snapshot("customers")
    pivot = sorted(r["created"] for r in rows)[20]
    conn = StripeConnector(sandbox.config.api_key, base_url=sandbox.url)
    since = datetime.fromtimestamp(pivot, UTC)
    page = await conn.fetch_page(request(since=since, mode=SyncMode.INCREMENTAL))
    assert {r.id for r in page.records} == {r["id"] for r in rows if r["created"] >= pivot}
    assert sandbox.log()[-1].query.get("created[gte]") == str(pivot)
    await conn.aclose()
