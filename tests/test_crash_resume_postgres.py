"""SIGKILL ``statesync run`` writing into PostgreSQL, resume, and demand exact data.

The approach of ``test_crash_resume.py`` (whose ``cli`` helper, sizes and emulator fixture
are reused), with ``--dest postgresql://...?schema=...``: after the kill, ``statesync
resume`` must finish the job and every live table must hold exactly the emulator's
records (same ids, same data, no duplicates), the published watermark must be the newest
record's, and no staging table or pending mark may be left behind.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from statesync.sandbox import Sandbox
from support.crash import SIZES, assert_exact_pg, cli, query_pg, sandbox  # noqa: F401 - sandbox is a fixture
from support.postgres import pg_schema, postgres_dsn  # noqa: F401 - fixtures

# Slow: subprocess crashes and resumes (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

# A subset of test_crash_resume.CASES: every point, and both sides of the swap.
CASES = [
    "before_fetch:7",
    "after_fetch:9",
    "in_page_write:1",
    "in_page_write:5",
    "in_page_write:12",
    "after_page_write:11",
    "after_checkpoint:3",
    "after_checkpoint:13",
    "before_transition:4",
    "after_transition:6",
    "in_finalize:1",
    "in_finalize:2",
    "after_finalize:1",
    "after_finalize:2",
]
JOB = "crashjob"


SHARED = ("--namespace", "")
"""`run`'s option for the shared tables, so the job writes into the test's ?schema=."""


def job_args(store: str, dest: str) -> list[str]:
    """``test_crash_resume.job_args`` with any destination URL."""
    return [
        *("--store", store, "--dest", dest),
        *("--max-iterations", "3", "--page-size", "10", "--lease-ttl", "1"),
        *("--wait-lease", "30", "--attempts", "3", "--concurrency", "2"),
    ]


def crash_then_resume(sandbox: Sandbox, store: str, dsn: str, schema: str, point: str) -> None:
    args = job_args(store, f"{dsn}?schema={schema}")
    env = {"STATESYNC_API_KEY": sandbox.config.api_key, "STATESYNC_CRASH_AT": point}
    entities = [a for e in SIZES for a in ("--entity", e)]
    first = cli(
        "run", "--base-url", sandbox.url, *entities, "--job-id", JOB, *args, *SHARED, env=env
    )
    assert first.returncode == -signal.SIGKILL, (
        f"crash point {point} was never reached: {first.stdout[-500:]} {first.stderr[-500:]}"
    )
    second = cli("resume", JOB, *args, env={**env, "STATESYNC_CRASH_AT": ""})
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    status = cli("status", JOB, "--store", store, "--json")
    states = {e["entity"]: e["state"] for e in json.loads(status.stdout)["entities"]}
    assert states == dict.fromkeys(SIZES, "complete")
    assert_exact_pg(sandbox, dsn, schema)


@pytest.mark.parametrize("point", CASES)
def test_postgres_destination_survives_sigkill(
    sandbox: Sandbox,
    tmp_path: Path,
    postgres_dsn: str,
    pg_schema: str,
    point: str,
) -> None:
    store = f"sqlite:///{tmp_path / 'state.db'}"
    crash_then_resume(sandbox, store, postgres_dsn, pg_schema, point)


def test_a_second_full_sync_replaces_the_first(
    sandbox: Sandbox,
    tmp_path: Path,
    postgres_dsn: str,
    pg_schema: str,
) -> None:
    """A second job killed inside its swap, over the first job's live tables, still ends
    with exactly the source's data (the retried swap replaces the first job's tables)."""
    store = f"sqlite:///{tmp_path / 'state.db'}"
    args = job_args(store, f"{postgres_dsn}?schema={pg_schema}")
    env = {"STATESYNC_API_KEY": sandbox.config.api_key}
    entities = [a for e in SIZES for a in ("--entity", e)]
    done = cli(
        "run", "--base-url", sandbox.url, *entities, "--job-id", "first", *args, *SHARED, env=env
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    crash_then_resume(sandbox, store, postgres_dsn, pg_schema, "in_finalize:1")
