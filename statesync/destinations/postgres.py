"""The PostgreSQL destination (``pip install 'statesync[postgres]'``), psycopg 3 async.

Same layout and semantics as :mod:`statesync.destinations.sqlite`, inside one schema:

* one live table per entity, named after it: ``id TEXT PRIMARY KEY, data JSONB NOT NULL,
  created_at, updated_at, synced_at TIMESTAMPTZ``;
* a full sync stages into ``_stg_{entity}_{job_key}`` (:mod:`statesync.destinations._names`),
  swapped in by :meth:`PostgresDestination.finalize` in one transaction (drop live, rename
  staging: DDL is transactional in PostgreSQL, so a reader sees the old table or the new);
* ``_statesync_watermarks_pending`` (raised in every page's transaction),
  ``_statesync_watermarks`` (published) and ``_statesync_swaps`` (finished swaps, which
  makes a retried ``finalize`` a no-op).

One connection, opened on first use and reopened after it breaks, serialised by an
``asyncio.Lock``; every write is one transaction. Pages are upserted with ``executemany``
(psycopg pipelines it): on 100-record pages it was a little faster than COPY into a temp
table plus ``INSERT ... SELECT`` and much faster than ``unnest`` arrays.

Unlike SQLite, names are case-sensitive (``Users`` and ``users`` are two tables), and
PostgreSQL refuses NUL characters in text and JSONB: such a record fails the page with a
:class:`~statesync.errors.DestinationError`. The DSN's password never reaches an error
message or ``repr``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from statesync._extras import Extra
from statesync._failpoints import crash_point
from statesync._models import Record, SyncMode
from statesync.destination import StagedTable, StagingCheck
from statesync.destinations._names import (
    check_staging,
    job_key,
    staging_table,
    validate_entity,
)
from statesync.errors import (
    ConfigurationError,
    DestinationError,
    StaleFenceError,
)

_PSYCOPG = Extra("the PostgreSQL destination", "postgres", "psycopg")
with _PSYCOPG.importing():
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

_T = TypeVar("_T")
if TYPE_CHECKING:
    _Conn: TypeAlias = psycopg.AsyncConnection[tuple[Any, ...]]
    _Work: TypeAlias = Callable[[_Conn], Awaitable[_T]]
_Row = tuple[str, str, datetime | None, datetime | None, datetime]

_DEFAULTS: dict[str, Any] = {"connect_timeout": 10, "application_name": "statesync"}
"""Connection settings used unless the DSN or a keyword sets them."""

# Schemas are validated like entities, minus the reserved prefixes (``public`` is fine).
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_META = (
    "CREATE TABLE IF NOT EXISTS {}._statesync_watermarks ("
    " entity TEXT PRIMARY KEY, watermark TIMESTAMPTZ NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {}._statesync_watermarks_pending ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, watermark TIMESTAMPTZ NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS {}._statesync_swaps ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, swapped_at TIMESTAMPTZ NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS {}._statesync_fences ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, token BIGINT NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS {}._statesync_staging ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, job TEXT NOT NULL, table_name TEXT NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS {}._statesync_checkpoints ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, data TEXT NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
)
# The engine's latest page checkpoint, written in the page's transaction.
_PUT_CHECKPOINT = (
    "INSERT INTO {}._statesync_checkpoints (job_key, entity, data) VALUES (%s, %s, %s)"
    " ON CONFLICT (job_key, entity) DO UPDATE SET data = excluded.data"
)
_GET_CHECKPOINT = "SELECT data FROM {}._statesync_checkpoints WHERE job_key = %s AND entity = %s"
_DROP_CHECKPOINT = "DELETE FROM {}._statesync_checkpoints WHERE job_key = %s AND entity = %s"
# Which job instance each staging table belongs to, for reconciliation and gc.
_REGISTER = (
    "INSERT INTO {}._statesync_staging (job_key, entity, job, table_name)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_UNREGISTER = "DELETE FROM {}._statesync_staging WHERE job_key = %s AND entity = %s"
_STAGING_TABLES = (
    "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE '!_stg!_%%'"
    " ESCAPE '!' ORDER BY tablename"
)
_REGISTRY = "SELECT table_name, job, entity FROM {}._statesync_staging"
_GET_FENCE = "SELECT token FROM {}._statesync_fences WHERE job_key = %s AND entity = %s"
# Raise the stored fencing token, never lower it: no row changes means a stale writer.
_FENCE = (
    "INSERT INTO {}._statesync_fences AS f (job_key, entity, token) VALUES (%s, %s, %s)"
    " ON CONFLICT (job_key, entity) DO UPDATE SET token = excluded.token"
    " WHERE excluded.token >= f.token"
)
_CREATE = (
    "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, data JSONB NOT NULL,"
    " created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, synced_at TIMESTAMPTZ)"
)
_UPSERT = (
    "INSERT INTO {} (id, data, created_at, updated_at, synced_at)"
    " VALUES (%s, %s::jsonb, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET data = excluded.data,"
    " created_at = excluded.created_at, updated_at = excluded.updated_at,"
    " synced_at = excluded.synced_at"
)
# DDL from two processes at once can collide in the catalogue (CREATE ... IF NOT EXISTS
# is not race-free), so DDL transactions take this per-schema lock first.
# Objects that depend on a table: views (through their rewrite rules) and foreign keys.
_DEPENDENTS = (
    "SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON d.objid = r.oid"
    " WHERE d.refobjid = to_regclass(%s) AND r.ev_class <> d.refobjid"
    " UNION ALL SELECT 1 FROM pg_constraint c"
    " WHERE c.confrelid = to_regclass(%s) AND c.contype = 'f' LIMIT 1"
)
_DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('statesync:' || %s))"
_SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
_TABLE_EXISTS = "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s"
_RAISE_PENDING = (
    "INSERT INTO {}._statesync_watermarks_pending AS p (job_key, entity, watermark)"
    " VALUES (%s, %s, %s) ON CONFLICT (job_key, entity)"
    " DO UPDATE SET watermark = GREATEST(p.watermark, excluded.watermark)"
)
_DROP_PENDING = "DELETE FROM {}._statesync_watermarks_pending WHERE job_key = %s AND entity = %s"
_SWAPPED = "SELECT 1 FROM {}._statesync_swaps WHERE job_key = %s AND entity = %s"
_RECORD_SWAP = "INSERT INTO {}._statesync_swaps (job_key, entity, swapped_at) VALUES (%s, %s, %s)"
_GET_MARK = "SELECT watermark FROM {}._statesync_watermarks WHERE entity = %s"
_FORGET_MARK = "DELETE FROM {}._statesync_watermarks WHERE entity = %s"
# Moves the job's pending mark to the published one in one statement.
_PUBLISH = (
    "WITH moved AS (DELETE FROM {0}._statesync_watermarks_pending"
    " WHERE job_key = %s AND entity = %s RETURNING entity, watermark)"
    " INSERT INTO {0}._statesync_watermarks AS w (entity, watermark)"
    " SELECT entity, watermark FROM moved ON CONFLICT (entity) DO UPDATE SET watermark = "
)
# Incremental: the published mark never moves backwards. Full: the live data was
# replaced, so its mark is the new data's, whatever it was.
_PUBLISH_MAX = _PUBLISH + "GREATEST(w.watermark, excluded.watermark)"
_PUBLISH_REPLACE = _PUBLISH + "excluded.watermark"


def _aware(moment: datetime | None) -> datetime | None:
    """Naive datetimes are UTC (as in ``_names.iso``), not the session's time zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _rows(records: Sequence[Record]) -> list[_Row]:
    # Plain json.dumps reuses one cached C encoder; JSONB drops the whitespace anyway.
    synced, dumps = datetime.now(UTC), json.dumps
    try:
        return [
            (r.id, dumps(r.data), _aware(r.created_at), _aware(r.updated_at), synced)
            for r in records
        ]
    except (TypeError, ValueError, RecursionError) as exc:
        raise DestinationError(f"a record is not JSON-serialisable: {exc}") from exc


def validate_schema(schema: str) -> str:
    """Return ``schema`` if it is a safe schema name, else raise ConfigurationError."""
    if not isinstance(schema, str) or _SCHEMA_NAME.fullmatch(schema) is None:
        raise ConfigurationError(
            f"invalid schema name {schema!r}: it must match ^[A-Za-z_][A-Za-z0-9_]{{0,62}}$"
        )
    return schema


def _conninfo(dsn: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(dsn)
    except psycopg.Error:
        # The DSN itself is malformed; psycopg's message may quote it, so say nothing more.
        raise ConfigurationError(
            "invalid PostgreSQL DSN (not shown: it may hold a password)"
        ) from None


def _describe(params: Mapping[str, Any]) -> tuple[str, str | None]:
    """A password-free label for messages (``user@host:port/db``), and the password."""
    label = (
        f"{params.get('user', '')}@{params.get('host', '')}:"
        f"{params.get('port', '')}/{params.get('dbname', '')}"
    )
    password = str(params["password"]) if params.get("password") else None
    return (label.replace(password, "***") if password else label), password


class PostgresDestination:
    """Writes records into PostgreSQL tables in ``schema`` (created if missing).

    ``connect_timeout`` bounds each connection attempt (seconds, default 10);
    ``application_name`` defaults to ``statesync``; ``connect_kwargs`` go to
    :meth:`psycopg.AsyncConnection.connect` (``sslmode``, ``options``, ...). Keywords win
    over the DSN's own settings. Nothing connects until the first call. ``rows`` and
    ``staged`` are async read helpers.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        connect_timeout: float | None = None,
        application_name: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        _PSYCOPG.require()
        self.schema = validate_schema(schema)
        self._dsn = dsn
        given = _conninfo(dsn)
        self._label, self._password = _describe(given)
        # Keywords win over the DSN, the DSN over our defaults.
        timeout = None if connect_timeout is None else max(1, round(connect_timeout))
        options = {"connect_timeout": timeout, "application_name": application_name}
        self._connect_kwargs: dict[str, Any] = {
            **{k: v for k, v in _DEFAULTS.items() if k not in given},
            **{k: v for k, v in options.items() if v is not None},
            **(connect_kwargs or {}),
        }
        self._conn: _Conn | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._schemas: dict[str, PostgresDestination] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresDestination:
        """``postgresql://user:pass@host:port/db?schema=name&sslmode=...``.

        ``schema`` is statesync's own parameter; the rest of the URL goes to libpq.
        """
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        schema = next((v for k, v in query if k == "schema"), None)
        rest = urlencode([(k, v) for k, v in query if k != "schema"])
        if schema:
            options["schema"] = schema
        return cls(urlunsplit(parts._replace(query=rest)), **options)

    def __repr__(self) -> str:
        return f"PostgresDestination({self._label!r}, schema={self.schema!r})"

    # -- plumbing -------------------------------------------------------------

    def _name(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.schema, table)

    def _sql(self, template: str, *tables: str) -> sql.Composed:
        """``template`` with ``{}`` filled by schema-qualified, quoted ``tables``
        (by the quoted schema alone when no table is given)."""
        names = [self._name(t) for t in tables] or [sql.Identifier(self.schema)]
        return sql.SQL(template).format(*names)

    def _fail(self, what: str, exc: BaseException) -> NoReturn:
        """Raise a DestinationError that cannot leak the DSN's password."""
        message = f"postgres destination {self._label}: {what}: {exc}"
        leaked = self._password is not None and self._password in message
        if leaked:
            message = message.replace(str(self._password), "***")
        error = DestinationError(message)
        # Chaining would print psycopg's own message with every traceback.
        raise error from (None if leaked else exc)

    async def _connect(self) -> _Conn:
        if self._closed:
            raise DestinationError(f"postgres destination {self._label} is closed")
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, **self._connect_kwargs
            )
        except psycopg.Error as exc:
            self._fail("cannot connect", exc)
        try:
            await self._setup(conn)
        except psycopg.Error as exc:
            await conn.close()
            self._fail("cannot set up the schema", exc)
        self._conn = conn
        return conn

    async def _setup(self, conn: _Conn) -> None:
        async with conn.transaction():
            await conn.execute(_DDL_LOCK, (self.schema,))
            # CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database: check first.
            found = await (await conn.execute(_SCHEMA_EXISTS, (self.schema,))).fetchone()
            if found is None:
                await conn.execute(self._sql("CREATE SCHEMA {}"))
            for statement in _META:
                await conn.execute(self._sql(statement))

    async def _run(self, work: _Work[_T], *, write: bool, what: str) -> _T:
        """Run ``work`` on the connection, in one transaction when ``write``."""
        async with self._lock:
            conn = await self._connect()
            try:
                if not write:
                    return await work(conn)
                async with conn.transaction():
                    return await work(conn)
            except psycopg.Error as exc:
                self._fail(what, exc)
            except asyncio.CancelledError:
                # Cancelled mid-query: the connection's state is unknown, start afresh.
                self._conn = None
                await conn.close()
                raise
            finally:
                if conn.broken:
                    self._conn = None

    async def _exists(self, conn: _Conn, table: str) -> bool:
        cursor = await conn.execute(_TABLE_EXISTS, (self.schema, table))
        return await cursor.fetchone() is not None

    async def _ddl_lock(self, conn: _Conn) -> None:
        await conn.execute(_DDL_LOCK, (self.schema,))

    # -- the Destination protocol ---------------------------------------------

    async def prepare(self, job_id: str, entity: str, mode: SyncMode) -> None:
        validate_entity(entity)
        key = job_key(job_id)
        table = entity if mode is SyncMode.INCREMENTAL else staging_table(entity, job_id)

        async def work(conn: _Conn) -> None:
            await self._ddl_lock(conn)
            # After a crash between finalize and "complete", the engine prepares again:
            # re-creating the staging table then would leave an orphan behind.
            if mode is SyncMode.FULL:
                swapped = await conn.execute(self._sql(_SWAPPED), (key, entity))
                if await swapped.fetchone() is not None:
                    return
            await conn.execute(self._sql(_CREATE, table))
            if mode is SyncMode.FULL:
                await conn.execute(self._sql(_REGISTER), (key, entity, job_id, table))

        await self._run(work, write=True, what=f"cannot prepare {entity!r}")

    async def write_page(
        self,
        job_id: str,
        entity: str,
        mode: SyncMode,
        records: Sequence[Record],
        watermark: datetime | None,
        *,
        fence: int | None = None,
        checkpoint: str | None = None,
    ) -> None:
        validate_entity(entity)
        table = entity if mode is SyncMode.INCREMENTAL else staging_table(entity, job_id)
        rows, upsert = _rows(records), self._sql(_UPSERT, table)
        key = job_key(job_id)
        mark = (key, entity, _aware(watermark)) if watermark is not None else None

        async def work(conn: _Conn) -> None:
            await self._check_fence(conn, key, entity, fence)
            if rows:
                async with conn.cursor() as cursor:
                    await cursor.executemany(upsert, rows)
            if mark is not None:
                await conn.execute(self._sql(_RAISE_PENDING), mark)
            if checkpoint is not None:
                await conn.execute(self._sql(_PUT_CHECKPOINT), (key, entity, checkpoint))
            crash_point("in_page_write")  # statements run, COMMIT not yet

        await self._run(work, write=True, what=f"cannot write a page of {entity!r}")

    async def finalize(
        self, job_id: str, entity: str, mode: SyncMode, *, fence: int | None = None
    ) -> None:
        validate_entity(entity)
        key = job_key(job_id)
        if mode is SyncMode.INCREMENTAL:

            async def publish(conn: _Conn) -> None:
                await self._check_fence(conn, key, entity, fence)
                await conn.execute(self._sql(_PUBLISH_MAX), (key, entity))
                await conn.execute(self._sql(_DROP_CHECKPOINT), (key, entity))

            await self._run(publish, write=True, what=f"cannot finalize {entity!r}")
            return

        async def swap(conn: _Conn) -> None:
            await self._check_fence(conn, key, entity, fence)
            await self._swap(conn, key, entity, staging_table(entity, job_id))
            await conn.execute(self._sql(_DROP_CHECKPOINT), (key, entity))
            crash_point("in_finalize")  # swapped inside the transaction, not committed

        await self._run(swap, write=True, what=f"cannot finalize {entity!r}")

    async def _check_fence(self, conn: _Conn, key: str, entity: str, fence: int | None) -> None:
        if fence is None:
            return
        cursor = await conn.execute(self._sql(_FENCE), (key, entity, fence))
        if cursor.rowcount == 0:
            raise StaleFenceError(entity, fence)

    async def _swap(self, conn: _Conn, key: str, entity: str, stage: str) -> None:
        """Replace the live table by ``stage`` and publish its mark, unless already done."""
        swapped = await conn.execute(self._sql(_SWAPPED), (key, entity))
        if await swapped.fetchone() is not None:
            return
        if not await self._exists(conn, stage):
            raise DestinationError(
                f"cannot finalize entity {entity!r}: its staging table is gone and no swap "
                "was recorded (was the job discarded, or never prepared?)"
            )
        await self._ddl_lock(conn)
        if await self._has_dependents(conn, entity):
            # Views or foreign keys on the live table would block (or, with CASCADE, be
            # dropped by) the rename swap: replace its rows instead, in this transaction.
            await conn.execute(self._sql("TRUNCATE {}", entity))
            await conn.execute(self._sql("INSERT INTO {} SELECT * FROM {}", entity, stage))
            await conn.execute(self._sql("DROP TABLE {}", stage))
        else:
            await conn.execute(self._sql("DROP TABLE IF EXISTS {}", entity))
            rename = sql.SQL("ALTER TABLE {} RENAME TO {}")
            await conn.execute(rename.format(self._name(stage), sql.Identifier(entity)))
        await conn.execute(self._sql(_UNREGISTER), (key, entity))
        # A full sync with no timestamps leaves no mark: incremental must start over.
        await conn.execute(self._sql(_FORGET_MARK), (entity,))
        await conn.execute(self._sql(_PUBLISH_REPLACE), (key, entity))
        await conn.execute(self._sql(_RECORD_SWAP), (key, entity, datetime.now(UTC)))

    async def _has_dependents(self, conn: _Conn, entity: str) -> bool:
        """Whether views or foreign keys depend on the live table of ``entity``."""
        qualified = sql.Identifier(self.schema, entity).as_string(conn)
        cursor = await conn.execute(_DEPENDENTS, (qualified, qualified))
        return await cursor.fetchone() is not None

    async def discard(self, job_id: str, entity: str) -> None:
        validate_entity(entity)
        key, stage = job_key(job_id), staging_table(entity, job_id)

        async def work(conn: _Conn) -> None:
            await conn.execute(self._sql("DROP TABLE IF EXISTS {}", stage))
            await self._forget(conn, key, entity)
            await conn.execute(self._sql(_UNREGISTER), (key, entity))

        await self._run(work, write=True, what=f"cannot discard {entity!r}")

    async def _forget(self, conn: _Conn, key: str, entity: str) -> None:
        """Drop what a job keeps beside its pages: its pending mark and its checkpoint."""
        await conn.execute(self._sql(_DROP_PENDING), (key, entity))
        await conn.execute(self._sql(_DROP_CHECKPOINT), (key, entity))

    async def inspect(self, job_id: str, entity: str) -> StagingCheck:
        validate_entity(entity)
        key, stage = job_key(job_id), staging_table(entity, job_id)

        async def work(conn: _Conn) -> StagingCheck:
            swapped = await (await conn.execute(self._sql(_SWAPPED), (key, entity))).fetchone()
            fence = await (await conn.execute(self._sql(_GET_FENCE), (key, entity))).fetchone()
            return StagingCheck(
                swapped=swapped is not None,
                staged=await self._exists(conn, stage),
                fence=None if fence is None else int(fence[0]),
            )

        return await self._run(work, write=False, what=f"cannot inspect {entity!r}")

    async def read_checkpoint(self, job_id: str, entity: str) -> str | None:
        validate_entity(entity)
        key = job_key(job_id)

        async def work(conn: _Conn) -> str | None:
            found = await conn.execute(self._sql(_GET_CHECKPOINT), (key, entity))
            row = await found.fetchone()
            return None if row is None else str(row[0])

        return await self._run(work, write=False, what=f"cannot read the checkpoint of {entity!r}")

    async def list_staging(self) -> list[StagedTable]:
        async def work(conn: _Conn) -> list[StagedTable]:
            rows = await (await conn.execute(self._sql(_REGISTRY))).fetchall()
            known = {row[0]: (row[1], row[2]) for row in rows}
            names = await (await conn.execute(_STAGING_TABLES, (self.schema,))).fetchall()
            return [StagedTable(n, *known.get(n, (None, None))) for (n,) in names]

        return await self._run(work, write=False, what="cannot list staging tables")

    async def drop_staging(self, staged: StagedTable) -> None:
        check_staging(staged.table)
        forget = "DELETE FROM {}._statesync_staging WHERE table_name = %s"

        async def work(conn: _Conn) -> None:
            await self._ddl_lock(conn)
            await conn.execute(self._sql("DROP TABLE IF EXISTS {}", staged.table))
            await conn.execute(self._sql(forget), (staged.table,))
            if staged.job is not None and staged.entity is not None:
                await self._forget(conn, job_key(staged.job), staged.entity)

        await self._run(work, write=True, what=f"cannot drop {staged.table!r}")

    async def watermark(self, entity: str) -> datetime | None:
        validate_entity(entity)

        async def work(conn: _Conn) -> datetime | None:
            row = await (await conn.execute(self._sql(_GET_MARK), (entity,))).fetchone()
            return None if row is None else _aware(row[0])

        return await self._run(work, write=False, what=f"cannot read the mark of {entity!r}")

    def namespace(self, name: str) -> PostgresDestination:
        """The same database, writing into schema ``name`` (a job's namespace).

        One destination per schema, each with its own connection, closed with this one.
        """
        if name == self.schema:
            return self
        child = self._schemas.get(name)
        if child is None:
            child = PostgresDestination(self._dsn, schema=name)
            child._connect_kwargs = dict(self._connect_kwargs)
            self._schemas[name] = child
        return child

    async def aclose(self) -> None:
        for child in self._schemas.values():
            await child.aclose()
        async with self._lock:
            self._closed = True
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    # -- read helpers (async; for tests and tools) -----------------------------

    async def rows(self, entity: str) -> dict[str, dict[str, Any]]:
        """The live table of ``entity`` as ``{id: record data}``; empty if none yet."""
        return await self._select(validate_entity(entity))

    async def staged(self, job_id: str, entity: str) -> dict[str, dict[str, Any]]:
        """What ``job_id`` has staged for a full sync of ``entity`` (empty if nothing)."""
        return await self._select(staging_table(entity, job_id))

    async def _select(self, table: str) -> dict[str, dict[str, Any]]:
        query = self._sql("SELECT id, data FROM {} ORDER BY id", table)

        async def work(conn: _Conn) -> dict[str, dict[str, Any]]:
            if not await self._exists(conn, table):
                return {}
            return {rid: data for rid, data in await (await conn.execute(query)).fetchall()}

        return await self._run(work, write=False, what=f"cannot read {table!r}")
