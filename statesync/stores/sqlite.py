"""The embedded, durable default state store: one SQLite file, stdlib ``sqlite3`` only.

Each operation runs in a worker thread (``asyncio.to_thread``) on the store's single
connection, which a lock serialises. Writes use ``BEGIN IMMEDIATE`` so the version and
lease checks and the write happen under SQLite's write lock, which is also what makes
two processes on the same file safe (they queue for up to ``busy_timeout``).
``synchronous=FULL`` because a checkpoint that a crash can undo would make a resumed
sync repeat or skip pages.

Jobs do not expire: :meth:`SQLiteStateStore.finish_job` only records ``finished_at``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeVar

import attrs

from statesync._converter import dumps, loads
from statesync._models import EntityRecord, JobSpec, Lease, TransitionRecord
from statesync._sqlite_lock import lock_wait, locked_error
from statesync.errors import (
    ConflictError,
    LeaseError,
    StoreError,
    StoreLockedError,
    UnknownJobError,
)

T = TypeVar("T")

BUSY_TIMEOUT: Final = 30.0
"""Seconds a write waits for another connection (or process) to release the file."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS entities (
    job_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    pos INTEGER NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_entity ON history (job_id, entity, id);
CREATE TABLE IF NOT EXISTS leases (
    job_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    host TEXT,
    pid INTEGER,
    PRIMARY KEY (job_id, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fences (
    job_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    token INTEGER NOT NULL,
    PRIMARY KEY (job_id, entity)
) WITHOUT ROWID;
"""

_TRIM_HISTORY: Final = """
DELETE FROM history WHERE job_id = ?1 AND entity = ?2 AND id <= (
    SELECT id FROM history WHERE job_id = ?1 AND entity = ?2
    ORDER BY id DESC LIMIT 1 OFFSET ?3
)
"""


@contextmanager
def _transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode otherwise)."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # Also after a failed COMMIT: a transaction left open would break every later BEGIN.
        if conn.in_transaction:
            conn.rollback()
        raise


def _open(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        with _transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to the current schema."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(leases)")}
    for name, kind in (("host", "TEXT"), ("pid", "INTEGER")):
        if name not in columns:
            conn.execute(f"ALTER TABLE leases ADD COLUMN {name} {kind}")


def _lost(job_id: str, entity: str) -> LeaseError:
    return LeaseError(f"lease on {entity!r} in job {job_id!r} was lost")


def _check_lease(conn: sqlite3.Connection, job_id: str, entity: str, token: int) -> None:
    row = conn.execute(
        "SELECT token, expires_at FROM leases WHERE job_id = ? AND entity = ?", (job_id, entity)
    ).fetchone()
    if row is None or row[0] != token or row[1] < time.time():
        raise _lost(job_id, entity)


class SQLiteStateStore:
    """A :class:`~statesync.store.StateStore` in one SQLite file (opened on first use)."""

    def __init__(self, path: str | Path, *, history_limit: int = 1000) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, got {history_limit}")
        self._path = path
        self._history_limit = history_limit
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def _run(self, op: Callable[[sqlite3.Connection], T], lease: Lease | None = None) -> T:
        """Run ``op`` in a thread; under ``lease`` (or the task's), lock waits end with it."""
        wait = lock_wait(BUSY_TIMEOUT, None if lease is None else lease.expires_at)
        return await asyncio.to_thread(self._locked, op, wait)

    def _locked(self, op: Callable[[sqlite3.Connection], T], wait: float) -> T:
        with self._lock:
            try:
                return self._bounded(op, self._connection(), wait)
            except sqlite3.Error as exc:
                where = f"sqlite store {str(self._path)!r}"
                locked = locked_error(exc, self._path, where, wait, StoreLockedError)
                raise locked or StoreError(f"sqlite: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _bounded(op: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection, wait: float) -> T:
        """``op`` with the busy timeout cut to ``wait`` seconds when that is shorter."""
        if wait >= BUSY_TIMEOUT:
            return op(conn)
        conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        try:
            return op(conn)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the store on {str(self._path)!r} is closed")
        if self._conn is None:
            self._conn = _open(self._path)
        return self._conn

    async def create_job(self, job: JobSpec, records: Sequence[EntityRecord]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job.job_id,)).fetchone():
                    raise ConflictError(job.job_id, "*", 0, 1)
                conn.execute(
                    "INSERT INTO jobs (job_id, data, created_at) VALUES (?, ?, ?)",
                    (job.job_id, dumps(job), time.time()),
                )
                conn.executemany(
                    "INSERT INTO entities (job_id, entity, pos, version, data)"
                    " VALUES (?, ?, ?, 1, ?)",
                    [
                        (job.job_id, rec.entity, pos, dumps(attrs.evolve(rec, version=1)))
                        for pos, rec in enumerate(records)
                    ],
                )

        await self._run(op)

    async def get_job(self, job_id: str) -> JobSpec:
        def op(conn: sqlite3.Connection) -> JobSpec:
            row = conn.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJobError(f"no job {job_id!r}")
            return loads(row[0], JobSpec)

        return await self._run(op)

    async def list_jobs(self, limit: int = 100) -> Sequence[JobSpec]:
        def op(conn: sqlite3.Connection) -> list[JobSpec]:
            rows = conn.execute("SELECT data FROM jobs ORDER BY seq DESC LIMIT ?", (limit,))
            return [loads(row[0], JobSpec) for row in rows]

        return await self._run(op)

    async def get_entity(self, job_id: str, entity: str) -> EntityRecord:
        def op(conn: sqlite3.Connection) -> EntityRecord:
            row = conn.execute(
                "SELECT data FROM entities WHERE job_id = ? AND entity = ?", (job_id, entity)
            ).fetchone()
            if row is None:
                raise UnknownJobError(f"no entity {entity!r} in job {job_id!r}")
            return loads(row[0], EntityRecord)

        return await self._run(op)

    async def list_entities(self, job_id: str) -> Sequence[EntityRecord]:
        def op(conn: sqlite3.Connection) -> list[EntityRecord]:
            with _transaction(conn, "DEFERRED"):  # one snapshot for both reads
                if not conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone():
                    raise UnknownJobError(f"no job {job_id!r}")
                rows = conn.execute(
                    "SELECT data FROM entities WHERE job_id = ? ORDER BY pos", (job_id,)
                ).fetchall()
            return [loads(row[0], EntityRecord) for row in rows]

        return await self._run(op)

    async def save(
        self,
        record: EntityRecord,
        *,
        transition: TransitionRecord | None = None,
        lease: Lease | None = None,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                self._check_save(conn, record, lease)
                conn.execute(
                    "UPDATE entities SET version = ?, data = ? WHERE job_id = ? AND entity = ?",
                    (record.version, dumps(record), record.job_id, record.entity),
                )
                if transition is not None:
                    self._append_history(conn, record.job_id, record.entity, transition)

        await self._run(op, lease)

    @staticmethod
    def _check_save(conn: sqlite3.Connection, record: EntityRecord, lease: Lease | None) -> None:
        job_id, entity = record.job_id, record.entity
        row = conn.execute(
            "SELECT version FROM entities WHERE job_id = ? AND entity = ?", (job_id, entity)
        ).fetchone()
        if row is None:
            raise UnknownJobError(f"no entity {entity!r} in job {job_id!r}")
        if lease is not None:
            _check_lease(conn, job_id, entity, lease.token)
        if row[0] != record.version - 1:
            raise ConflictError(job_id, entity, record.version - 1, row[0])

    def _append_history(
        self, conn: sqlite3.Connection, job_id: str, entity: str, transition: TransitionRecord
    ) -> None:
        conn.execute(
            "INSERT INTO history (job_id, entity, data) VALUES (?, ?, ?)",
            (job_id, entity, dumps(transition)),
        )
        conn.execute(_TRIM_HISTORY, (job_id, entity, self._history_limit))

    async def history(self, job_id: str, entity: str) -> Sequence[TransitionRecord]:
        def op(conn: sqlite3.Connection) -> list[TransitionRecord]:
            rows = conn.execute(
                "SELECT data FROM history WHERE job_id = ? AND entity = ? ORDER BY id",
                (job_id, entity),
            )
            return [loads(row[0], TransitionRecord) for row in rows]

        return await self._run(op)

    async def acquire_lease(
        self,
        job_id: str,
        entity: str,
        owner: str,
        ttl: float,
        *,
        host: str | None = None,
        pid: int | None = None,
        min_token: int = 0,
    ) -> Lease | None:
        def op(conn: sqlite3.Connection) -> Lease | None:
            with _transaction(conn):
                now = time.time()
                held = conn.execute(
                    "SELECT owner, expires_at FROM leases WHERE job_id = ? AND entity = ?",
                    (job_id, entity),
                ).fetchone()
                if held is not None and held[0] != owner and held[1] >= now:
                    return None
                token = _next_token(conn, job_id, entity, min_token)
                lease = Lease(job_id, entity, owner, token, now + ttl, host, pid)
                conn.execute(
                    "INSERT OR REPLACE INTO leases"
                    " (job_id, entity, owner, token, expires_at, host, pid)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, entity, owner, token, lease.expires_at, host, pid),
                )
                return lease

        return await self._run(op)

    async def get_lease(self, job_id: str, entity: str) -> Lease | None:
        def op(conn: sqlite3.Connection) -> Lease | None:
            row = conn.execute(
                "SELECT owner, token, expires_at, host, pid FROM leases"
                " WHERE job_id = ? AND entity = ? AND expires_at >= ?",
                (job_id, entity, time.time()),
            ).fetchone()
            if row is None:
                return None
            return Lease(job_id, entity, row[0], row[1], row[2], row[3], row[4])

        return await self._run(op)

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        def op(conn: sqlite3.Connection) -> Lease:
            with _transaction(conn):
                _check_lease(conn, lease.job_id, lease.entity, lease.token)
                renewed = attrs.evolve(lease, expires_at=time.time() + ttl)
                conn.execute(
                    "UPDATE leases SET expires_at = ? WHERE job_id = ? AND entity = ?",
                    (renewed.expires_at, lease.job_id, lease.entity),
                )
                return renewed

        return await self._run(op, lease)

    async def release_lease(self, lease: Lease) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM leases WHERE job_id = ? AND entity = ? AND token = ?",
                (lease.job_id, lease.entity, lease.token),
            )

        await self._run(op, lease)

    async def finish_job(self, job_id: str) -> None:
        """Record ``finished_at``; SQLite jobs are kept until deleted (no expiry)."""

        def op(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE jobs SET finished_at = ? WHERE job_id = ?", (time.time(), job_id)
            )
            if cursor.rowcount == 0:
                raise UnknownJobError(f"no job {job_id!r}")

        await self._run(op)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _next_token(conn: sqlite3.Connection, job_id: str, entity: str, floor: int = 0) -> int:
    """Draw the next fencing token, at least ``floor`` (the fences table only counts up)."""
    conn.execute(
        "INSERT INTO fences (job_id, entity, token) VALUES (?1, ?2, max(1, ?3))"
        " ON CONFLICT (job_id, entity) DO UPDATE SET token = max(token + 1, ?3)",
        (job_id, entity, floor),
    )
    row = conn.execute(
        "SELECT token FROM fences WHERE job_id = ? AND entity = ?", (job_id, entity)
    ).fetchone()
    token: int = row[0]
    return token
