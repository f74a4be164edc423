"""A Redis restart mid-sync: the run stops with a clear store error, nothing is lost,
and a resume against the restarted server (AOF persistence) finishes exactly."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statesync.sandbox import Sandbox, SandboxConfig
from support.crash import STATESYNC, live_ids, wait_for_requests

# Slow: subprocess crashes and resumes (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow


def test_resume_after_a_redis_restart(tmp_path: Path, redis_server: Callable[..., Any]) -> None:
    server = redis_server("--appendonly", "yes", "--appendfsync", "always")
    store = f"{server.url}?prefix=restart"
    dest = tmp_path / "d.db"
    with Sandbox(SandboxConfig(sizes={"customers": 150})) as sandbox:
        sandbox.faults.configure(latency=0.1)
        env = {**os.environ, "STATESYNC_API_KEY": sandbox.config.api_key}
        common = [
            "--store",
            store,
            "--dest",
            f"sqlite:///{dest}",
            "--max-iterations",
            "2",
            "--page-size",
            "10",
            "--lease-ttl",
            "2",
            "--wait-lease",
            "30",
        ]
        run = subprocess.Popen(
            [
                STATESYNC,
                "run",
                "--base-url",
                sandbox.url,
                "--entity",
                "customers",
                "--job-id",
                "rj",
                *common,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_requests(sandbox, 4)
        server.stop()
        out, err = run.communicate(timeout=60)
        assert run.returncode == 3, out + err  # an outage: interrupted, not failed
        assert "redis" in err.lower() and "Traceback" not in err
        server.start()
        sandbox.faults.configure(latency=0)
        resumed = subprocess.run(
            [STATESYNC, "resume", "rj", *common],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        status = subprocess.run(
            [STATESYNC, "status", "rj", "--store", store, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(status.stdout)["entities"][0]["state"] == "complete"
        got = live_ids(dest, "customers")
        assert sorted(got) == sorted(r["id"] for r in sandbox.snapshot("customers"))
