"""The embedded default destination: one SQLite file, stdlib ``sqlite3``.

Layout (see :mod:`statesync.destination` for the contract it implements):

* one live table per entity, named after it: ``id TEXT PRIMARY KEY, data TEXT NOT NULL``
  (the record's JSON), ``created_at``, ``updated_at``, ``synced_at`` (ISO-8601, UTC);
* a full sync stages into ``_stg_{entity}_{job_key}`` (see
  :mod:`statesync.destinations._names`), swapped in by :meth:`SQLiteDestination.finalize`
  in one transaction (drop live, rename staging), so a reader sees the old table or the
  new one, never a mix;
* ``_statesync_watermarks_pending`` holds each job's mark, raised in the transaction of
  every page; ``_statesync_watermarks`` holds the published ones; ``_statesync_swaps``
  remembers finished swaps, which makes a retried ``finalize`` a no-op;
* ``_statesync_checkpoints`` holds the engine's latest page checkpoint of each job and
  entity, written in the page's transaction (see ``CheckpointingDestination``).

All calls share one connection, serialised by a lock; every write is one
``BEGIN IMMEDIATE`` ... ``COMMIT``. Statements run on the event loop (a page takes well
under a millisecond) and only the COMMIT, which waits for fsync, runs in a worker
thread, so the next page is parsed while the disk syncs. ``offload=True`` moves whole
calls to a worker thread instead.

SQLite table names are case-insensitive: entities ``Users`` and ``users`` share a table,
so give entities names that differ by more than case.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from statesync import _json
from statesync._failpoints import crash_point
from statesync._models import Record, SyncMode
from statesync._sqlite_lock import lock_wait, locked_error
from statesync.destination import StagedTable, StagingCheck
from statesync.destinations._names import (
    check_staging,
    iso,
    job_key,
    parse_iso,
    quote,
    staging_table,
    validate_entity,
)
from statesync.errors import DestinationError, DestinationLockedError, StaleFenceError

_T = TypeVar("_T")
_BUSY_MS = 30_000
_Row = tuple[str, str, str | None, str | None, str]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _statesync_watermarks ("
    " entity TEXT PRIMARY KEY, watermark TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _statesync_watermarks_pending ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, watermark TEXT NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS _statesync_swaps ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, swapped_at TEXT NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS _statesync_fences ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, token INTEGER NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS _statesync_staging ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, job TEXT NOT NULL, table_name TEXT NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
    "CREATE TABLE IF NOT EXISTS _statesync_checkpoints ("
    " job_key TEXT NOT NULL, entity TEXT NOT NULL, data TEXT NOT NULL,"
    " PRIMARY KEY (job_key, entity))",
)
_PUT_CHECKPOINT = (
    "INSERT INTO _statesync_checkpoints (job_key, entity, data) VALUES (?, ?, ?)"
    " ON CONFLICT (job_key, entity) DO UPDATE SET data = excluded.data"
)
_GET_CHECKPOINT = "SELECT data FROM _statesync_checkpoints WHERE job_key = ? AND entity = ?"
_DROP_CHECKPOINT = "DELETE FROM _statesync_checkpoints WHERE job_key = ? AND entity = ?"
# Which job instance each staging table belongs to, for reconciliation and gc.
_REGISTER = (
    "INSERT OR IGNORE INTO _statesync_staging (job_key, entity, job, table_name)"
    " VALUES (?, ?, ?, ?)"
)
_UNREGISTER = "DELETE FROM _statesync_staging WHERE job_key = ? AND entity = ?"
_STAGING_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '!_stg!_%' ESCAPE '!'"
    " ORDER BY name"
)
_REGISTRY = "SELECT table_name, job, entity FROM _statesync_staging"
_GET_FENCE = "SELECT token FROM _statesync_fences WHERE job_key = ? AND entity = ?"
# Raise the stored fencing token, never lower it: no row changes means a stale writer.
_FENCE = (
    "INSERT INTO _statesync_fences (job_key, entity, token) VALUES (?, ?, ?)"
    " ON CONFLICT (job_key, entity) DO UPDATE SET token = excluded.token"
    " WHERE excluded.token >= _statesync_fences.token"
)

_RAISE_PENDING = (
    "INSERT INTO _statesync_watermarks_pending (job_key, entity, watermark) VALUES (?, ?, ?)"
    " ON CONFLICT (job_key, entity) DO UPDATE SET watermark = max(watermark, excluded.watermark)"
)
_GET_PENDING = (
    "SELECT watermark FROM _statesync_watermarks_pending WHERE job_key = ? AND entity = ?"
)
_DROP_PENDING = "DELETE FROM _statesync_watermarks_pending WHERE job_key = ? AND entity = ?"
_SWAPPED = "SELECT 1 FROM _statesync_swaps WHERE job_key = ? AND entity = ?"
_RECORD_SWAP = "INSERT INTO _statesync_swaps (job_key, entity, swapped_at) VALUES (?, ?, ?)"
_TABLE_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
_GET_MARK = "SELECT watermark FROM _statesync_watermarks WHERE entity = ?"
# Incremental: the published mark never moves backwards.
_PUBLISH_MAX = (
    "INSERT INTO _statesync_watermarks (entity, watermark) VALUES (?, ?)"
    " ON CONFLICT (entity) DO UPDATE SET watermark = max(watermark, excluded.watermark)"
)
# Full: the live data was replaced, so its mark is the new data's, whatever it was.
_PUBLISH_REPLACE = (
    "INSERT INTO _statesync_watermarks (entity, watermark) VALUES (?, ?)"
    " ON CONFLICT (entity) DO UPDATE SET watermark = excluded.watermark"
)
_FORGET_MARK = "DELETE FROM _statesync_watermarks WHERE entity = ?"


def _create_table(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(table)} (id TEXT PRIMARY KEY, data TEXT NOT NULL,"
        " created_at TEXT, updated_at TEXT, synced_at TEXT)"
    )


def _upsert(table: str) -> str:
    return (
        f"INSERT INTO {quote(table)} (id, data, created_at, updated_at, synced_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data,"
        " created_at = excluded.created_at, updated_at = excluded.updated_at,"
        " synced_at = excluded.synced_at"
    )


def _stamps(records: Sequence[Record]) -> dict[datetime | None, str | None]:
    """ISO strings of the page's timestamps, each formatted once (many are shared)."""
    moments = {r.created_at for r in records} | {r.updated_at for r in records}
    out: dict[datetime | None, str | None] = {m: iso(m) for m in moments if m is not None}
    out[None] = None
    return out


def _rows(records: Sequence[Record]) -> list[_Row]:
    """The page as SQL parameters: one JSON encoding per record, nothing else heavy."""
    synced, dumps, stamps = iso(datetime.now(UTC)), _json.dumps, _stamps(records)
    try:
        return [
            (r.id, dumps(r.data), stamps[r.created_at], stamps[r.updated_at], synced)
            for r in records
        ]
    except (TypeError, ValueError, RecursionError) as exc:
        raise DestinationError(f"a record is not JSON-serialisable: {exc}") from exc


class SQLiteDestination:
    """Writes records into a SQLite file (WAL, ``synchronous=FULL``).

    ``rows`` and ``staged`` are synchronous read helpers for tests and the demo.
    """

    def __init__(self, path: str | Path, *, offload: bool = False) -> None:
        """Open (creating if needed) the database file; this blocks briefly.

        By default statements run on the event loop's thread and only the COMMIT in a
        worker: handing the whole page to a thread costs more than the page takes, as
        both threads then fight for the GIL while the next page is parsed.
        ``offload=True`` runs whole calls in a worker thread, for loops that must never
        block on a statement.
        """
        self.path = Path(path)
        self._offload = offload
        self._alock: asyncio.Lock | None = None
        self._lock = threading.Lock()
        self._upserts: dict[str, str] = {}
        try:
            # Autocommit mode: transactions are opened explicitly in _transaction.
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
        except sqlite3.Error as exc:
            raise DestinationError(f"cannot open sqlite destination {self.path}: {exc}") from exc
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._conn.close()
            raise DestinationError(f"cannot set up sqlite destination {self.path}: {exc}") from exc

    def _setup(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        with self._lock:
            self._transaction(lambda c: [c.execute(sql) for sql in _SCHEMA])

    # -- plumbing -------------------------------------------------------------

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one write transaction; the caller holds the lock."""
        conn = self._conn
        # IMMEDIATE takes the write lock up front, so no upgrade deadlock can happen.
        self._begin_waiting(conn, lock_wait(_BUSY_MS / 1000))
        try:
            out = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT: a transaction left open would wedge every later call.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out

    def _begin_waiting(self, conn: sqlite3.Connection, wait: float) -> None:
        """BEGIN IMMEDIATE, waiting up to ``wait`` s (the lease's time left) for the lock."""
        bounded = wait < _BUSY_MS / 1000
        if bounded:
            conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            where = f"sqlite destination {self.path}"
            locked = locked_error(exc, self.path, where, wait, DestinationLockedError)
            if locked is None:
                raise
            raise locked from exc
        finally:
            if bounded:
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")

    def _locked(self, work: Callable[[sqlite3.Connection], _T], write: bool) -> _T:
        with self._lock:
            try:
                return self._transaction(work) if write else work(self._conn)
            except sqlite3.Error as exc:
                raise DestinationError(f"sqlite destination {self.path}: {exc}") from exc

    async def _run(self, work: Callable[[sqlite3.Connection], _T], write: bool) -> _T:
        if self._offload:
            return await asyncio.to_thread(self._locked, work, write)
        async with self._loop_lock():
            # Held across the COMMIT's await: the sync read helpers take it from other
            # threads; never call them from the loop while a write is in flight.
            with self._lock:
                try:
                    return await self._inline(work, write)
                except sqlite3.Error as exc:
                    raise DestinationError(f"sqlite destination {self.path}: {exc}") from exc

    async def _inline(self, work: Callable[[sqlite3.Connection], _T], write: bool) -> _T:
        """Statements on the loop (they are quick); the COMMIT, which fsyncs, off it."""
        conn = self._conn
        if not write:
            return work(conn)
        if not _begin_now(conn):
            # Another process holds the write lock: wait for it off the loop.
            await asyncio.to_thread(self._begin_waiting, conn, lock_wait(_BUSY_MS / 1000))
        try:
            out = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        commit = asyncio.ensure_future(asyncio.to_thread(conn.execute, "COMMIT"))
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The thread cannot be stopped: let the COMMIT finish before anyone else
            # touches the connection, then honour the cancellation.
            await asyncio.wait([commit])
            raise
        finally:
            failed = commit.done() and not commit.cancelled() and commit.exception() is not None
            if failed and conn.in_transaction:
                conn.execute("ROLLBACK")
        return out

    def _loop_lock(self) -> asyncio.Lock:
        if self._alock is None:
            self._alock = asyncio.Lock()
        return self._alock

    async def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._run(work, True)

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._run(work, False)

    def _upsert_sql(self, table: str) -> str:
        sql = self._upserts.get(table)
        if sql is None:
            sql = self._upserts[table] = _upsert(table)
        return sql

    # -- the Destination protocol ---------------------------------------------

    async def prepare(self, job_id: str, entity: str, mode: SyncMode) -> None:
        validate_entity(entity)
        if mode is SyncMode.INCREMENTAL:
            await self._write(lambda c: c.execute(_create_table(entity)))
            return
        key, stage = job_key(job_id), staging_table(entity, job_id)

        def work(conn: sqlite3.Connection) -> None:
            # After a crash between finalize and "complete", the engine prepares again:
            # re-creating the staging table then would leave an orphan behind.
            if conn.execute(_SWAPPED, (key, entity)).fetchone() is None:
                conn.execute(_create_table(stage))
                conn.execute(_REGISTER, (key, entity, job_id, stage))

        await self._write(work)

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
        key = job_key(job_id)
        mark = (key, entity, iso(watermark)) if watermark is not None else None
        sql, rows = self._upsert_sql(table), _rows(records)

        def work(conn: sqlite3.Connection) -> None:
            _check_fence(conn, key, entity, fence)
            if rows:
                conn.executemany(sql, rows)
            if mark is not None:
                conn.execute(_RAISE_PENDING, mark)
            if checkpoint is not None:
                conn.execute(_PUT_CHECKPOINT, (key, entity, checkpoint))
            crash_point("in_page_write")  # statements run, COMMIT not yet

        await self._write(work)

    async def finalize(
        self, job_id: str, entity: str, mode: SyncMode, *, fence: int | None = None
    ) -> None:
        validate_entity(entity)
        key = job_key(job_id)
        if mode is SyncMode.INCREMENTAL:

            def publish(conn: sqlite3.Connection) -> None:
                _check_fence(conn, key, entity, fence)
                _publish(conn, key, entity, _PUBLISH_MAX)

            await self._write(publish)
            return
        stage = staging_table(entity, job_id)

        def work(conn: sqlite3.Connection) -> None:
            _check_fence(conn, key, entity, fence)
            _swap(conn, key, entity, stage)
            crash_point("in_finalize")  # swapped inside the transaction, not committed

        await self._write(work)

    async def discard(self, job_id: str, entity: str) -> None:
        validate_entity(entity)
        key, stage = job_key(job_id), staging_table(entity, job_id)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
            _forget(conn, key, entity)
            conn.execute(_UNREGISTER, (key, entity))

        await self._write(work)

    async def inspect(self, job_id: str, entity: str) -> StagingCheck:
        validate_entity(entity)
        key, stage = job_key(job_id), staging_table(entity, job_id)

        def work(conn: sqlite3.Connection) -> StagingCheck:
            fence = conn.execute(_GET_FENCE, (key, entity)).fetchone()
            return StagingCheck(
                swapped=conn.execute(_SWAPPED, (key, entity)).fetchone() is not None,
                staged=conn.execute(_TABLE_EXISTS, (stage,)).fetchone() is not None,
                fence=None if fence is None else fence[0],
            )

        return await self._read(work)

    async def read_checkpoint(self, job_id: str, entity: str) -> str | None:
        validate_entity(entity)
        query = (job_key(job_id), entity)
        row = await self._read(lambda c: c.execute(_GET_CHECKPOINT, query).fetchone())
        return None if row is None else str(row[0])

    async def list_staging(self) -> list[StagedTable]:
        def work(conn: sqlite3.Connection) -> list[StagedTable]:
            known = {row[0]: (row[1], row[2]) for row in conn.execute(_REGISTRY)}
            names = [row[0] for row in conn.execute(_STAGING_TABLES)]
            return [StagedTable(name, *known.get(name, (None, None))) for name in names]

        return await self._read(work)

    async def drop_staging(self, staged: StagedTable) -> None:
        table = check_staging(staged.table)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(f"DROP TABLE IF EXISTS {quote(table)}")
            conn.execute("DELETE FROM _statesync_staging WHERE table_name = ?", (table,))
            if staged.job is not None and staged.entity is not None:
                _forget(conn, job_key(staged.job), staged.entity)

        await self._write(work)

    async def watermark(self, entity: str) -> datetime | None:
        validate_entity(entity)
        row = await self._read(lambda c: c.execute(_GET_MARK, (entity,)).fetchone())
        return None if row is None else parse_iso(row[0])

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- read helpers (synchronous; for tests and the demo) -------------------

    def rows(self, entity: str) -> dict[str, dict[str, Any]]:
        """The live table of ``entity`` as ``{id: record data}``; empty if none yet."""
        return self._select(validate_entity(entity))

    def staged(self, job_id: str, entity: str) -> dict[str, dict[str, Any]]:
        """What ``job_id`` has staged for a full sync of ``entity`` (empty if nothing)."""
        return self._select(staging_table(entity, job_id))

    def _select(self, table: str) -> dict[str, dict[str, Any]]:
        def work(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            if conn.execute(_TABLE_EXISTS, (table,)).fetchone() is None:
                return {}
            cursor = conn.execute(f"SELECT id, data FROM {quote(table)} ORDER BY id")
            return {rid: json.loads(data) for rid, data in cursor}

        return self._locked(work, write=False)


def _publish(conn: sqlite3.Connection, key: str, entity: str, sql: str) -> None:
    """Move the job's pending mark to the published one (``sql`` says how); the job's
    walk is over, so its checkpoint goes too."""
    row = conn.execute(_GET_PENDING, (key, entity)).fetchone()
    if row is not None:
        conn.execute(sql, (entity, row[0]))
    _forget(conn, key, entity)


def _forget(conn: sqlite3.Connection, key: str, entity: str) -> None:
    """Drop what a job keeps beside its pages: its pending mark and its checkpoint."""
    conn.execute(_DROP_PENDING, (key, entity))
    conn.execute(_DROP_CHECKPOINT, (key, entity))


def _begin_now(conn: sqlite3.Connection) -> bool:
    """Open the write transaction if the lock is free right now; False if it is taken.

    The busy timeout is dropped to zero for this one statement, so a lock held by
    another process never stalls the event loop: the caller then waits in a thread.
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
    return True


def _check_fence(conn: sqlite3.Connection, key: str, entity: str, fence: int | None) -> None:
    if fence is not None and conn.execute(_FENCE, (key, entity, fence)).rowcount == 0:
        raise StaleFenceError(entity, fence)


def _swap(conn: sqlite3.Connection, key: str, entity: str, stage: str) -> None:
    """Replace the live table by ``stage`` and publish its mark, unless already done."""
    if conn.execute(_SWAPPED, (key, entity)).fetchone() is not None:
        return
    if conn.execute(_TABLE_EXISTS, (stage,)).fetchone() is None:
        raise DestinationError(
            f"cannot finalize entity {entity!r}: its staging table is gone and no swap "
            "was recorded (was the job discarded, or never prepared?)"
        )
    conn.execute(f"DROP TABLE IF EXISTS {quote(entity)}")
    conn.execute(f"ALTER TABLE {quote(stage)} RENAME TO {quote(entity)}")
    conn.execute(_UNREGISTER, (key, entity))
    # A full sync with no timestamps leaves no mark: incremental must start over.
    conn.execute(_FORGET_MARK, (entity,))
    _publish(conn, key, entity, _PUBLISH_REPLACE)
    conn.execute(_RECORD_SWAP, (key, entity, iso(datetime.now(UTC))))
