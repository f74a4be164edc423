"""Each edge maps its own library's exceptions to the engine's kinds; the core knows none.

Real clients against real servers: httpx, the Stripe SDK and gql against the sandbox (or a
port nobody listens on), redis-py against a private Redis that is stopped.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import stripe
from gql import GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from redis.asyncio import Redis

import statesync
from statesync.connectors._graphql_errors import map_gql_error
from statesync.connectors._http_errors import map_http_error, map_httpx_error
from statesync.connectors._stripe_errors import map_stripe_error
from statesync.errors import (
    AuthError,
    ConnectorError,
    ErrorKind,
    InternalError,
    RateLimitedError,
    StoreError,
    TransientError,
)
from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from statesync.stores._redis_budget import RedisRateBudget, map_budget_error
from statesync.stores.redis import RedisStateStore
from support.redis_server import RedisServer

CORE = Path(__file__).resolve().parents[1] / "statesync"
EDGES = ("stores", "destinations", "_cli", "sandbox")
FOREIGN = re.compile(
    r"^\s*(?:import|from)\s+(stripe|gql|redis|psycopg|httpx|httpcore|rich|click)\b", re.M
)
PENDING_MOVE = {"_listeners.py", "_display.py", "_demo.py"}
"""rich users that issue 13 item 2 moves under ``statesync/_cli`` (another branch)."""


def test_core_modules_import_no_library_of_an_edge() -> None:
    offenders = [
        f"{path.relative_to(CORE)}: {match.group(0).strip()}"
        for path in sorted(CORE.rglob("*.py"))
        if path.relative_to(CORE).parts[0] not in EDGES and path.name not in PENDING_MOVE
        for match in FOREIGN.finditer(path.read_text())
    ]
    assert offenders == []


def test_the_core_error_module_has_no_translate() -> None:
    import statesync.errors as errors

    assert not hasattr(errors, "translate")


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a read times out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"customers": 5})) as running:
        yield running


async def _httpx_failure(url: str, **client: object) -> Exception:
    async with httpx.AsyncClient(**client) as http:  # type: ignore[arg-type]
        try:
            (await http.get(url)).raise_for_status()
        except httpx.HTTPError as exc:
            return exc
    raise AssertionError("the request succeeded")


async def test_httpx_refused_connection_is_transient(closed_port: int) -> None:
    exc = await _httpx_failure(f"http://127.0.0.1:{closed_port}/")
    error = map_http_error(exc, request="GET /")
    assert type(error) is TransientError
    assert error.__cause__ is exc and error.request == "GET /"


async def test_httpx_read_timeout_is_a_timeout(silent_server: str) -> None:
    exc = await _httpx_failure(silent_server, timeout=0.2)
    assert map_http_error(exc, request="GET /").kind is ErrorKind.TIMEOUT


async def test_httpx_status_errors_keep_the_status_and_the_delay(sandbox: Sandbox) -> None:
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/customers", nth=1, status=429, headers={"Retry-After": "3"})
    )
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/customers", nth=2, status=503))
    headers = {"Authorization": f"Bearer {sandbox.config.api_key}"}
    limited = map_http_error(await _httpx_failure(f"{sandbox.url}/v1/customers", headers=headers))
    assert isinstance(limited, RateLimitedError) and limited.retry_after == 3
    down = map_http_error(await _httpx_failure(f"{sandbox.url}/v1/customers", headers=headers))
    assert type(down) is TransientError and down.status == 503


async def test_a_dropped_connection_is_transient(sandbox: Sandbox) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/customers", nth=1, kind="drop"))
    exc = await _httpx_failure(f"{sandbox.url}/v1/customers")
    assert map_http_error(exc).kind is ErrorKind.TRANSIENT


def test_what_httpx_did_not_raise_is_internal_not_re_raised() -> None:
    bug = KeyError("id")
    assert map_httpx_error(bug) is None
    error = map_http_error(bug, request="GET /x")
    assert isinstance(error, InternalError) and error.kind is ErrorKind.INTERNAL
    assert error.exception == "KeyError" and error.__cause__ is bug


def test_typed_errors_pass_through_every_mapping() -> None:
    known = AuthError("no")
    assert map_http_error(known) is known
    assert map_stripe_error(known, request=None) is known
    assert map_gql_error(known, request=None) is known


async def _stripe_failure(base_url: str, key: str) -> stripe.StripeError:
    client = stripe.StripeClient(
        key,
        base_addresses={"api": base_url},
        http_client=stripe.HTTPXClient(timeout=2),
        max_network_retries=0,
    )
    try:
        await client.raw_request_async("get", "/v1/customers", limit=1)
    except stripe.StripeError as exc:
        return exc
    raise AssertionError("the request succeeded")


async def test_stripe_sdk_errors_map_to_kinds(sandbox: Sandbox, closed_port: int) -> None:
    wrong_key = await _stripe_failure(sandbox.url, "sk_test_wrong")
    assert isinstance(wrong_key, stripe.AuthenticationError)
    assert map_stripe_error(wrong_key, request="GET /v1/customers").kind is ErrorKind.AUTH
    sandbox.faults.add_rule(
        FaultRule(path_prefix="/v1/customers", nth=1, status=429, headers={"Retry-After": "5"})
    )
    limited = map_stripe_error(
        await _stripe_failure(sandbox.url, sandbox.config.api_key), request=None
    )
    assert isinstance(limited, RateLimitedError) and limited.retry_after == 5
    refused = await _stripe_failure(f"http://127.0.0.1:{closed_port}", "sk_test_x")
    assert isinstance(refused, stripe.APIConnectionError)
    assert map_stripe_error(refused, request=None).kind is ErrorKind.TRANSIENT
    bug = map_stripe_error(AttributeError("data"), request=None)
    assert isinstance(bug, InternalError) and bug.exception == "AttributeError"


async def test_gql_errors_map_to_kinds(closed_port: int) -> None:
    transport = HTTPXAsyncTransport(url=f"http://127.0.0.1:{closed_port}/graphql")
    try:
        await transport.connect()  # type: ignore[no-untyped-call]
        await transport.execute(GraphQLRequest("{ viewer { id } }"))
    except TransportError as exc:
        refused = map_gql_error(exc, request="POST /graphql")
    else:
        raise AssertionError("the request succeeded")
    finally:
        await transport.close()  # type: ignore[no-untyped-call]
    assert type(refused) is TransientError and refused.request == "POST /graphql"
    query = TransportQueryError(
        "limited", errors=[{"message": "slow down", "extensions": {"code": "THROTTLED"}}]
    )
    assert map_gql_error(query, request=None).kind is ErrorKind.RATE_LIMITED
    bug = map_gql_error(TypeError("bad"), request=None)
    assert isinstance(bug, InternalError) and bug.kind is ErrorKind.INTERNAL


async def test_a_stopped_redis_is_a_store_error_and_a_transient_budget(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    store = RedisStateStore.from_url(server.url)
    client = Redis.from_url(server.url, decode_responses=True)
    budget = RedisRateBudget(client, "statesync:budget:edge-test", statesync.RateSettings(5.0))
    await budget.acquire()  # answered while Redis runs
    server.stop()
    with pytest.raises(StoreError, match=r"^redis: ConnectionError") as stored:
        await store.list_jobs()
    assert not isinstance(stored.value, ConnectorError)
    with pytest.raises(TransientError, match="rate budget unavailable: redis: ConnectionError"):
        await budget.acquire()
    await store.aclose()
    await client.aclose()


def test_a_budget_bug_is_internal() -> None:
    error = map_budget_error(ZeroDivisionError("pace"))
    assert isinstance(error, InternalError) and error.exception == "ZeroDivisionError"


async def test_sqlite_errors_are_store_and_destination_errors(tmp_path: Path) -> None:
    from statesync.destinations.sqlite import SQLiteDestination
    from statesync.errors import DestinationError
    from statesync.stores.sqlite import SQLiteStateStore

    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a sqlite file" * 100)
    store = SQLiteStateStore(not_a_db)
    with pytest.raises(StoreError, match=r"^sqlite: DatabaseError") as stored:
        await store.list_jobs()
    assert type(stored.value.__cause__).__name__ == "DatabaseError"
    await store.aclose()
    with pytest.raises(DestinationError, match="cannot set up sqlite destination") as dest:
        SQLiteDestination(not_a_db)
    assert type(dest.value.__cause__).__name__ == "DatabaseError"


async def test_psycopg_errors_are_destination_errors(closed_port: int) -> None:
    import psycopg

    from statesync.destinations.postgres import PostgresDestination
    from statesync.errors import DestinationError

    dest = PostgresDestination(
        f"postgresql://postgres:hunter2@127.0.0.1:{closed_port}/postgres", schema="s"
    )
    with pytest.raises(DestinationError, match="cannot connect") as info:
        await dest.watermark("customers")
    assert not isinstance(info.value, psycopg.Error)
    assert "hunter2" not in str(info.value)
    await dest.aclose()
