"""Walks the real APIs break, from the command line with default flags: a ``_skip`` cap
the client was not told, a date filter the server ignores."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from statesync.sandbox import Sandbox, SandboxConfig
from support.cli import env, run_cmd, status
from support.namespace import table

# Slow: drives the CLI in subprocesses (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

LEADS = 230


def run(sandbox: Sandbox, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [*run_cmd(sandbox, tmp, "lead", connector="close"), "--max-iterations", "6", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(sandbox), timeout=120)


def lead_requests(sandbox: Sandbox) -> int:
    return sum(1 for e in sandbox.log() if e.path.startswith("/api/v1/lead"))


@pytest.mark.parametrize("extra", [(), ("--pages-in-flight", "3")])
def test_a_skip_cap_nobody_told_the_client_still_stores_every_lead(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    with Sandbox(SandboxConfig(sizes={"close.lead": LEADS})) as sandbox:
        # Served over HTTP like the other faults; the CLI keeps its default skip cap.
        sandbox.faults.apply_json({"skip_cap": 45})
        done = run(sandbox, tmp_path, *extra)
        assert done.returncode == 0, done.stdout + done.stderr
        with sqlite3.connect(tmp_path / "d.db") as db:
            ids = [r[0] for r in db.execute(f'SELECT id FROM "{table("lead", "close")}"')]
        assert sorted(ids) == sorted(r["id"] for r in sandbox.snapshot("close.lead"))
        log = sorted(sandbox.log(), key=lambda e: e.number)
        refused = [e.number for e in log if e.status == 400]
        assert refused, "the hidden cap was never reached"
        assert any("query" in e.query for e in log), "no date window was opened"
        # Learned once: the windows after it stay under the cap without asking again
        # (with planned pages, the ones already in flight may meet it too).
        later = [e for e in log if e.number > refused[-1]]
        assert len(refused) <= (1 if not extra else 4)
        assert all(int(e.query["_skip"]) <= 45 for e in later)
        rows = {e["entity"]: e for e in json.loads(status(tmp_path, "--json").stdout)["entities"]}
        assert rows["lead"]["state"] == "complete" and rows["lead"]["records"] == LEADS


def test_a_window_filter_the_server_ignores_fails_typed_within_a_few_requests(
    tmp_path: Path,
) -> None:
    with Sandbox(SandboxConfig(sizes={"close.lead": LEADS})) as sandbox:
        sandbox.faults.apply_json({"skip_cap": 45, "ignore_params": ["query"]})
        done = run(sandbox, tmp_path)
        assert done.returncode == 1, done.stdout + done.stderr
        rows = {e["entity"]: e for e in json.loads(status(tmp_path, "--json").stdout)["entities"]}
        lead = rows["lead"]
        assert lead["state"] == "failed" and lead["last_error_kind"] == "no_progress"
        # The error names the endpoint and the filter that was sent.
        assert "/api/v1/lead/" in lead["last_error"] and "date_created >=" in lead["last_error"]
        # Up to the cap (pages of 10, the 400, the window's first page), then stop:
        # not thousands of requests, and not retried.
        assert lead_requests(sandbox) <= 45 // 10 + 1 + 2 + 1
