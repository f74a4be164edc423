"""Kill ``statesync run`` with SIGKILL at many points, resume, and demand exact data.

Crash points are named in ``statesync._failpoints``; ``STATESYNC_CRASH_AT=point:n``
kills the process the n-th time it passes the point. After every kill, ``statesync
resume`` must finish the job and the destination must equal the emulator's data: no
record lost, none duplicated, every entity complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from statesync.sandbox import Sandbox, SandboxConfig
from support.crash import (
    SIZES,
    STATESYNC,
    assert_exact,
    cli,
    live_ids,
    sandbox,  # noqa: F401 - fixtures
    wait_for_requests,
)

# Slow: subprocess crashes and resumes (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

CASES = [
    "before_fetch:1",
    "before_fetch:7",
    "after_fetch:1",
    "after_fetch:9",
    "in_page_write:1",
    "in_page_write:5",
    "in_page_write:12",
    "after_page_write:2",
    "after_page_write:11",
    "after_checkpoint:3",
    "after_checkpoint:13",
    "before_transition:1",
    "before_transition:4",
    "before_transition:9",
    "after_transition:1",
    "after_transition:6",
    "after_transition:10",
    "in_finalize:1",
    "in_finalize:2",
    "after_finalize:1",
    "after_finalize:2",
]


def job_args(store: str, dest: Path) -> list[str]:
    return [
        "--store",
        store,
        "--dest",
        f"sqlite:///{dest}",
        "--max-iterations",
        "3",
        "--page-size",
        "10",
        "--lease-ttl",
        "1",
        "--wait-lease",
        "30",
        "--attempts",
        "3",
        "--concurrency",
        "2",
    ]


def crash_then_resume(sandbox: Sandbox, store: str, tmp: Path, point: str) -> None:
    dest = tmp / "data.db"
    env = {"STATESYNC_API_KEY": sandbox.config.api_key, "STATESYNC_CRASH_AT": point}
    entities = [a for e in SIZES for a in ("--entity", e)]
    first = cli(
        "run",
        "--base-url",
        sandbox.url,
        *entities,
        "--job-id",
        "crashjob",
        *job_args(store, dest),
        env=env,
    )
    assert first.returncode == -signal.SIGKILL, (
        f"crash point {point} was never reached: {first.stdout[-500:]} {first.stderr[-500:]}"
    )
    env.pop("STATESYNC_CRASH_AT")
    second = cli(
        "resume", "crashjob", *job_args(store, dest), env={**env, "STATESYNC_CRASH_AT": ""}
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    status = cli("status", "crashjob", "--store", store, "--json")
    states = {e["entity"]: e["state"] for e in json.loads(status.stdout)["entities"]}
    assert states == dict.fromkeys(SIZES, "complete")
    assert_exact(sandbox, dest)


@pytest.mark.parametrize("point", CASES)
def test_sqlite_store_survives_sigkill(sandbox: Sandbox, tmp_path: Path, point: str) -> None:
    crash_then_resume(sandbox, f"sqlite:///{tmp_path / 'state.db'}", tmp_path, point)


@pytest.mark.parametrize("point", CASES[::3])
def test_redis_store_survives_sigkill(
    sandbox: Sandbox, tmp_path: Path, redis_url: str, key_prefix: str, point: str
) -> None:
    crash_then_resume(sandbox, f"{redis_url}?prefix={key_prefix}", tmp_path, point)


def test_second_worker_on_a_running_job_stops_with_a_clear_message(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    with Sandbox(SandboxConfig(sizes=SIZES)) as sandbox:
        sandbox.faults.configure(latency=0.3)  # the first worker must outlive the second's start
        store = f"{redis_url}?prefix={key_prefix}"
        dest = tmp_path / "data.db"
        env = {"STATESYNC_API_KEY": sandbox.config.api_key}
        args = [
            "--store",
            store,
            "--dest",
            f"sqlite:///{dest}",
            "--max-iterations",
            "3",
            "--page-size",
            "10",
        ]
        first = subprocess.Popen(
            [
                STATESYNC,
                "run",
                "--base-url",
                sandbox.url,
                "--entity",
                "customers",
                "--job-id",
                "twojob",
                *args,
            ],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_requests(sandbox, 2)
        second = cli("resume", "twojob", *args, "--wait-lease", "0", env=env)
        assert second.returncode == 75, second.stdout + second.stderr
        assert "another worker holds the lease on 'customers'" in second.stdout
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
        got = live_ids(dest, "customers")
        assert sorted(got) == sorted(r["id"] for r in sandbox.snapshot("customers"))
