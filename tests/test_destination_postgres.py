"""PostgresDestination: the shared contract against a real server, plus what only it shows."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
from psycopg import sql

from statesync._cli._open import open_destination
from statesync.destination import Destination
from statesync.destinations._names import job_key, staging_table
from statesync.destinations.postgres import PostgresDestination
from statesync.errors import ConfigurationError, DestinationError, MissingExtraError
from support.destination_contract import (
    ENTITY,
    FULL,
    INCR,
    CheckpointContract,
    DestinationContract,
    DestinationFactory,
    at,
    full_sync,
    page,
)
from support.postgres import (  # noqa: F401 - fixtures
    PostgresServer,
    pg_database,
    pg_schema,
    postgres_dsn,
    postgres_server,
)

# Slow: a PostgreSQL server per module and its schemas (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow


class TestPostgresDestination(DestinationContract, CheckpointContract):
    @pytest.fixture
    def make(self, postgres_dsn: str, pg_schema: str) -> DestinationFactory:
        async def factory() -> Destination:
            return PostgresDestination(postgres_dsn, schema=pg_schema)

        return factory


@pytest.fixture
async def pg_dest(
    postgres_dsn: str,
    pg_schema: str,
) -> AsyncIterator[PostgresDestination]:
    dest = PostgresDestination(postgres_dsn, schema=pg_schema)
    yield dest
    await dest.aclose()


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection of our own, to look at the tables from outside the destination."""
    conn = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    yield conn
    await conn.close()


async def _tables(conn: psycopg.AsyncConnection, schema: str) -> set[str]:
    cursor = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    return {name for (name,) in await cursor.fetchall()}


# -- layout ---------------------------------------------------------------------


async def test_live_table_columns(
    pg_dest: PostgresDestination, admin: psycopg.AsyncConnection
) -> None:
    await full_sync(pg_dest, "job-1", [page("a", hours=1)])
    cursor = await admin.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (pg_dest.schema, ENTITY),
    )
    assert await cursor.fetchall() == [
        ("id", "text"),
        ("data", "jsonb"),
        ("created_at", "timestamp with time zone"),
        ("updated_at", "timestamp with time zone"),
        ("synced_at", "timestamp with time zone"),
    ]
    table = sql.Identifier(pg_dest.schema, ENTITY)
    row = await (await admin.execute(sql.SQL("SELECT * FROM {}").format(table))).fetchone()
    assert row is not None and row[:4] == ("a", {"id": "a"}, at(0), at(1))


async def test_meta_tables_and_no_leftovers(
    pg_dest: PostgresDestination, admin: psycopg.AsyncConnection
) -> None:
    await full_sync(pg_dest, "job-1", [page("a")])
    await full_sync(pg_dest, "job-2", [page("b")])
    assert await _tables(admin, pg_dest.schema) == {
        ENTITY,
        "_statesync_watermarks",
        "_statesync_watermarks_pending",
        "_statesync_swaps",
        "_statesync_fences",
        "_statesync_staging",
        "_statesync_checkpoints",
    }


async def test_default_schema_is_public(pg_database: str) -> None:
    dest = open_destination(pg_database)
    assert isinstance(dest, PostgresDestination) and dest.schema == "public"
    await full_sync(dest, "job-1", [page("a", hours=2)])
    await dest.aclose()
    async with await psycopg.AsyncConnection.connect(pg_database) as conn:
        assert ENTITY in await _tables(conn, "public")


async def test_open_destination_takes_the_schema_from_the_url(
    postgres_dsn: str,
    pg_schema: str,
    admin: psycopg.AsyncConnection,
) -> None:
    app = f"app-{uuid.uuid4().hex}"
    url = f"{postgres_dsn}?schema={pg_schema}&connect_timeout=5&application_name={app}"
    dest = open_destination(url)
    assert isinstance(dest, PostgresDestination) and dest.schema == pg_schema
    await full_sync(dest, "job-1", [page("a")])
    assert set(await dest.rows(ENTITY)) == {"a"}
    # The URL's libpq settings reach the connection (our defaults do not override them).
    seen = await admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
    )
    assert await seen.fetchone() == (1,)
    await dest.aclose()


async def test_data_survives_reopen(postgres_dsn: str, pg_schema: str) -> None:
    first = PostgresDestination(postgres_dsn, schema=pg_schema)
    await full_sync(first, "job-1", [page("a", "b", hours=2)])
    await first.prepare("job-2", ENTITY, INCR)
    await first.write_page("job-2", ENTITY, INCR, page("c", hours=7), at(7))
    await first.aclose()
    second = PostgresDestination(postgres_dsn, schema=pg_schema)
    assert set(await second.rows(ENTITY)) == {"a", "b", "c"}
    assert await second.watermark(ENTITY) == at(2)
    # The pending mark of job-2 was committed beside its page, so it survives too.
    await second.finalize("job-2", ENTITY, INCR)
    assert await second.watermark(ENTITY) == at(7)
    await second.aclose()


async def test_naive_datetimes_are_utc(pg_dest: PostgresDestination) -> None:
    naive = at(3).replace(tzinfo=None)
    await pg_dest.prepare("job-1", ENTITY, INCR)
    await pg_dest.write_page("job-1", ENTITY, INCR, page("a"), naive)
    await pg_dest.finalize("job-1", ENTITY, INCR)
    assert await pg_dest.watermark(ENTITY) == at(3)


# -- atomic swaps ----------------------------------------------------------------


async def test_readers_see_old_or_new_table_never_partial(
    pg_dest: PostgresDestination,
    postgres_dsn: str,
) -> None:
    sizes = {0: 300, 1: 1200}
    ids = {k: [f"r{i}" for i in range(n)] for k, n in sizes.items()}
    await full_sync(pg_dest, "job-0", [page(*ids[0])])
    counts: list[int] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(_count_loop(postgres_dsn, pg_dest.schema, counts, stop))
    try:
        for round_ in range(1, 7):
            size = round_ % 2
            pages = [page(*ids[size][i : i + 100]) for i in range(0, sizes[size], 100)]
            await full_sync(pg_dest, f"job-{round_}", pages)
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await reader
    assert len(counts) > 10, "the reader hardly read"
    assert set(counts) <= set(sizes.values())


async def _count_loop(dsn: str, schema: str, counts: list[int], stop: asyncio.Event) -> None:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, ENTITY))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            row = await (await conn.execute(query)).fetchone()
            assert row is not None
            counts.append(row[0])


async def test_a_failed_swap_rolls_back_entirely(
    pg_dest: PostgresDestination, admin: psycopg.AsyncConnection
) -> None:
    await full_sync(pg_dest, "job-1", [page("a", hours=1)])
    await pg_dest.prepare("job-2", ENTITY, FULL)
    await pg_dest.write_page("job-2", ENTITY, FULL, page("b", hours=2), at(2))
    # Make the swap's last statement (recording it) fail: job-1's row holds the entity.
    await admin.execute(
        sql.SQL("CREATE UNIQUE INDEX boom ON {} (entity)").format(
            sql.Identifier(pg_dest.schema, "_statesync_swaps")
        )
    )
    with pytest.raises(DestinationError, match="cannot finalize"):
        await pg_dest.finalize("job-2", ENTITY, FULL)
    assert set(await pg_dest.rows(ENTITY)) == {"a"}
    assert set(await pg_dest.staged("job-2", ENTITY)) == {"b"}
    assert await pg_dest.watermark(ENTITY) == at(1)


# -- names -------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["x; DROP TABLE y", "public.x", 'we"ird', "", "a" * 64, "é"])
def test_bad_schema_names_are_refused(postgres_dsn: str, schema: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        PostgresDestination(postgres_dsn, schema=schema)


async def test_job_ids_never_reach_sql(
    pg_dest: PostgresDestination, admin: psycopg.AsyncConnection
) -> None:
    job = "evil'); DROP TABLE customers; --\"x"
    await full_sync(pg_dest, "job-0", [page("keep")])
    await pg_dest.prepare(job, ENTITY, FULL)
    await pg_dest.write_page(job, ENTITY, FULL, page("a"), at(0))
    tables = await _tables(admin, pg_dest.schema)
    assert staging_table(ENTITY, job) == f"_stg_{ENTITY}_{job_key(job)}"
    assert staging_table(ENTITY, job) in tables and ENTITY in tables
    await pg_dest.discard(job, ENTITY)
    assert staging_table(ENTITY, job) not in await _tables(admin, pg_dest.schema)
    assert set(await pg_dest.rows(ENTITY)) == {"keep"}


async def test_names_are_case_sensitive(pg_dest: PostgresDestination) -> None:
    await full_sync(pg_dest, "job-1", [page("upper")], entity="Users")
    await full_sync(pg_dest, "job-1", [page("lower")], entity="users")
    assert set(await pg_dest.rows("Users")) == {"upper"}
    assert set(await pg_dest.rows("users")) == {"lower"}


@pytest.mark.parametrize("name", ["_statesync_swaps", "_stg_x", "_STATESYNC_x"])
async def test_reserved_names_are_refused(pg_dest: PostgresDestination, name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        await pg_dest.prepare("j", name, INCR)


async def test_nul_characters_are_a_destination_error(pg_dest: PostgresDestination) -> None:
    await pg_dest.prepare("job-1", ENTITY, INCR)
    with pytest.raises(DestinationError):
        await pg_dest.write_page("job-1", ENTITY, INCR, page("a", s="nul\x00here"), None)
    await pg_dest.write_page("job-1", ENTITY, INCR, page("b"), None)
    assert set(await pg_dest.rows(ENTITY)) == {"b"}


# -- secrets and failures ----------------------------------------------------------

SECRET = "Sup3r-Secret-pw_4711"


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


@pytest.mark.parametrize("form", ["url", "keywords"])
async def test_password_never_in_errors(
    postgres_server: Callable[..., PostgresServer],
    caplog: pytest.LogCaptureFixture,
    form: str,
) -> None:
    server = postgres_server(password="the-right-one")
    dsn = (
        server.dsn(password=SECRET)
        if form == "url"
        else f"host=127.0.0.1 port={server.port} dbname=postgres user=postgres password={SECRET}"
    )
    caplog.set_level(logging.DEBUG)
    dest = PostgresDestination(dsn, schema="s")
    assert SECRET not in repr(dest)
    with pytest.raises(DestinationError, match="cannot connect") as info:
        await dest.watermark(ENTITY)
    said = _everything_said(info.value)
    assert "password authentication failed" in said  # the server did reject it
    assert SECRET not in said
    assert SECRET not in caplog.text
    await dest.aclose()


async def test_password_is_masked_if_a_message_quotes_it(
    postgres_dsn: str,
) -> None:
    # A hostname libpq cannot resolve, spelled as the password: psycopg's message quotes
    # the host, so this is how a message containing the secret would be redacted.
    dsn = f"postgresql://postgres:{SECRET}@{SECRET}.invalid:5432/test"
    dest = PostgresDestination(dsn, connect_timeout=2)
    with pytest.raises(DestinationError) as info:
        await dest.watermark(ENTITY)
    said = _everything_said(info.value)
    assert SECRET not in said and "***" in said
    await dest.aclose()


def test_malformed_dsn_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresDestination(f"host=x password={SECRET} 'unterminated")
    assert SECRET not in _everything_said(info.value)


async def test_reconnects_after_the_connection_dies(
    postgres_dsn: str,
    pg_schema: str,
    admin: psycopg.AsyncConnection,
) -> None:
    app = f"statesync-test-{uuid.uuid4().hex}"  # so only this test's connection is killed
    dest = PostgresDestination(postgres_dsn, schema=pg_schema, application_name=app)
    await full_sync(dest, "job-1", [page("a", hours=1)])
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (app,),
    )
    # The first call finds the connection dead (the engine retries such a chunk) ...
    with pytest.raises(DestinationError):
        await dest.watermark(ENTITY)
    # ... and the next one reconnects.
    assert await dest.watermark(ENTITY) == at(1)
    await dest.aclose()


async def test_closed_destination_raises_destination_error(pg_dest: PostgresDestination) -> None:
    await pg_dest.aclose()
    with pytest.raises(DestinationError, match="closed"):
        await pg_dest.watermark(ENTITY)


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "statesync.destinations.postgres")
    # The module imports without the extra; building a destination names the extra.
    module = importlib.import_module("statesync.destinations.postgres")
    with pytest.raises(MissingExtraError, match=r"statesync\[postgres\]"):
        module.PostgresDestination("postgresql://u@127.0.0.1:1/db")


async def test_swap_keeps_views_on_the_live_table(
    pg_dest: PostgresDestination, admin: psycopg.AsyncConnection
) -> None:
    await full_sync(pg_dest, "job-1", [page("a", "b")])
    view = sql.Identifier(pg_dest.schema, "customers_view")
    table = sql.Identifier(pg_dest.schema, ENTITY)
    await admin.execute(sql.SQL("CREATE VIEW {} AS SELECT id FROM {}").format(view, table))
    await admin.commit()
    await full_sync(pg_dest, "job-2", [page("c")])
    rows = await (await admin.execute(sql.SQL("SELECT id FROM {}").format(view))).fetchall()
    assert [r[0] for r in rows] == ["c"]
