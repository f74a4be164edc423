"""Crash-and-resume helpers: the CLI in a subprocess, a module-scoped sandbox, exact checks."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from statesync.sandbox import Sandbox, SandboxConfig
from statesync.testing import statesync
from statesync.testing._crash import STATESYNC as STATESYNC
from support.namespace import table

SIZES = {"customers": 130, "invoices": 75}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes=SIZES)) as running:
        yield running


cli = statesync
"""The ``statesync`` command line, ``env`` laid over this environment."""


def live_ids(db: Path, entity: str, connector: str = "stripe") -> list[str]:
    """The ids in ``entity``'s live table, in the job's default namespace (``stripe__``)."""
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(f'SELECT id FROM "{table(entity, connector)}"')]


def wait_for_requests(sandbox: Sandbox, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(sandbox.log()) < n:
        assert time.monotonic() < deadline, "the first worker never started fetching"
        time.sleep(0.02)


def query_pg(dsn: str, query: sql.SQL | sql.Composed, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def assert_exact_pg(sandbox: Sandbox, dsn: str, schema: str) -> None:
    for entity in SIZES:
        table = sql.Identifier(schema, entity)
        got = query_pg(dsn, sql.SQL("SELECT id, data FROM {}").format(table))
        expected = {r["id"]: r for r in sandbox.snapshot(entity)}
        assert len(got) == len({rid for rid, _ in got}), f"{entity}: duplicated rows"
        assert dict(got) == expected, f"{entity}: rows differ from the source"
        newest = max(datetime.fromtimestamp(r["created"], UTC) for r in expected.values())
        marks = sql.Identifier(schema, "_statesync_watermarks")
        mark = query_pg(
            dsn, sql.SQL("SELECT watermark FROM {} WHERE entity = %s").format(marks), entity
        )
        assert mark == [(newest,)], f"{entity}: watermark"
    tables = query_pg(dsn, sql.SQL("SELECT tablename FROM pg_tables WHERE schemaname = %s"), schema)
    assert not [t for (t,) in tables if t.startswith("_stg_")], "staging tables left behind"
    pending = sql.Identifier(schema, "_statesync_watermarks_pending")
    assert query_pg(dsn, sql.SQL("SELECT * FROM {}").format(pending)) == []


def assert_exact(sandbox: Sandbox, db: Path) -> None:
    for entity in SIZES:
        got = live_ids(db, entity)
        expected = [r["id"] for r in sandbox.snapshot(entity)]
        assert len(got) == len(set(got)), f"{entity}: duplicated rows"
        assert set(got) == set(expected), f"{entity}: rows differ from the source"
