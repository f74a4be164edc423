"""Operating jobs from the CLI: a killed worker shows stalled, recurring job ids run new
instances, and namespaces keep two sources' same-named entities in two tables."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from support.cli import GRAPHQL_CONFIG
from support.crash import STATESYNC, wait_for_requests
from support.namespace import table

# Slow: drives the CLI in subprocesses (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow


def env(sandbox: Sandbox) -> dict[str, str]:
    return {**os.environ, "STATESYNC_API_KEY": sandbox.config.api_key, "COLUMNS": "150"}


def paths(tmp: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp / 's.db'}", "--dest", f"sqlite:///{tmp / 'd.db'}"]


def status(tmp: Path, job: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [STATESYNC, "status", job, *paths(tmp)[:2], "--json", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    payload: dict[str, Any] = json.loads(done.stdout)
    return payload


def call(cmd: list[str], sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env(sandbox), capture_output=True, text=True, timeout=120)


def ids(tmp: Path, table: str) -> list[str]:
    with sqlite3.connect(tmp / "d.db") as db:
        return sorted(r[0] for r in db.execute(f'SELECT id FROM "{table}"'))


def test_a_killed_worker_shows_stalled_and_a_recovered_entity_no_error(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 80})) as sandbox:
        sandbox.faults.configure(latency=0.1)
        sandbox.faults.add_rule(FaultRule(path_prefix="/v1/customers", nth=2, status=503))
        cmd = [STATESYNC, "run", "--base-url", sandbox.url, "--entity", "customers",
               "--job-id", "k", *paths(tmp_path), "--page-size", "5", "--lease-ttl", "3",
               "--max-iterations", "2"]  # fmt: skip
        proc = subprocess.Popen(
            cmd, env=env(sandbox), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_requests(sandbox, 5)
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        while True:  # within the lease's TTL (the dead pid is seen at once on this host)
            entity = status(tmp_path, "k")["entities"][0]
            if entity["liveness"] == "stalled" or time.monotonic() - killed_at > 3:
                break
            time.sleep(0.1)
        assert entity["liveness"] == "stalled", entity
        assert entity["state"] in ("fetching", "chunk_done"), entity
        assert entity["eta_s"] is None and entity["records"] < 80
        assert entity["stalled_since"] is not None
        sandbox.faults.configure(latency=0)
        resumed = subprocess.run(
            # The dead worker's lease blocks until its TTL ends: wait it out.
            [STATESYNC, "resume", "k", *paths(tmp_path), "--wait-lease", "10"],
            env=env(sandbox),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        done = status(tmp_path, "k")["entities"][0]
        assert done["state"] == "complete" and done["liveness"] == "finished"
        assert done["last_error"] is None and done["last_error_kind"] is None
        assert ids(tmp_path, table("customers")) == sorted(
            r["id"] for r in sandbox.snapshot("customers")
        )


def test_one_job_id_three_runs_three_instances(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 25})) as sandbox:
        cmd = [STATESYNC, "run", "--base-url", sandbox.url, "--entity", "customers",
               "--job-id", "nightly", *paths(tmp_path), "--page-size", "10"]  # fmt: skip
        for number in (1, 2, 3):
            done = subprocess.run(
                cmd, env=env(sandbox), capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
            if number > 1:
                assert f"job nightly instance {number}" in done.stdout
            expected = sorted(r["id"] for r in sandbox.snapshot("customers"))
            assert ids(tmp_path, table("customers")) == expected
        for number in (1, 2, 3):
            old = status(tmp_path, "nightly", "--instance", str(number))
            assert old["instance"] == number
            assert old["entities"][0]["state"] == "complete"
            assert old["entities"][0]["records"] == 25
        assert status(tmp_path, "nightly")["instance"] == 3


def test_two_sources_same_entity_name_two_tables(tmp_path: Path) -> None:
    config = tmp_path / "graphql.toml"
    # A GraphQL entity called "customers" (it walks the tickets), like Stripe's.
    config.write_text(GRAPHQL_CONFIG.replace("[entities.tickets]", "[entities.customers]"))
    sizes = {"customers": 30, "graphql.tickets": 35}
    with Sandbox(SandboxConfig(sizes=sizes)) as sandbox:
        # No --namespace: each job defaults to its connector's name.
        stripe = [STATESYNC, "run", "--base-url", sandbox.url, "--entity", "customers",
                  *paths(tmp_path)]  # fmt: skip
        graphql = [STATESYNC, "run", "--connector", "graphql", "--base-url",
                   f"{sandbox.url}/graphql", "--graphql-config", str(config), "--entity",
                   "customers", *paths(tmp_path)]  # fmt: skip
        for cmd in (stripe, graphql):
            done = subprocess.run(
                cmd, env=env(sandbox), capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
        stripe_ids = sorted(r["id"] for r in sandbox.snapshot("customers"))
        ticket_ids = sorted(r["id"] for r in sandbox.snapshot("graphql.tickets"))
        assert ids(tmp_path, "stripe__customers") == stripe_ids
        assert ids(tmp_path, "graphql__customers") == ticket_ids
        with sqlite3.connect(tmp_path / "d.db") as db:
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "customers" not in names


def test_running_a_job_id_that_is_running_answers_busy(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 200})) as sandbox:
        sandbox.faults.configure(latency=0.1)
        cmd = [STATESYNC, "run", "--base-url", sandbox.url, "--entity", "customers",
               "--job-id", "busy", *paths(tmp_path), "--page-size", "5"]  # fmt: skip
        first = subprocess.Popen(
            cmd, env=env(sandbox), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_requests(sandbox, 3)
            second = call([*cmd, "--json"], sandbox)
        finally:
            first.send_signal(signal.SIGINT)
            first.wait(timeout=60)
        assert second.returncode == 75, second.stdout + second.stderr
        error = json.loads(second.stdout)["error"]
        assert error["type"] == "JobBusyError"
        assert str(first.pid) in error["holders"]["customers"]["owner"]
        assert status(tmp_path, "busy")["instance"] == 1  # no second instance was made


def test_namespace_flag_and_config_key_choose_the_tables(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 20})) as sandbox:
        base = [STATESYNC, "run", "--base-url", sandbox.url, "--entity", "customers"]
        served = sorted(r["id"] for r in sandbox.snapshot("customers"))
        shared = call([*base, "--job-id", "old", "--namespace", "", *paths(tmp_path)], sandbox)
        assert shared.returncode == 0, shared.stdout + shared.stderr
        assert ids(tmp_path, "customers") == served  # the shared tables of older releases
        config = tmp_path / "job.toml"
        config.write_text(
            '[job]\nentities = ["customers"]\nnamespace = "billing"\n'
            f'[connector]\nname = "stripe"\n[connector.options]\nbase_url = "{sandbox.url}"\n'
        )
        named = call([STATESYNC, "run", "--config", str(config), *paths(tmp_path)], sandbox)
        assert named.returncode == 0, named.stdout + named.stderr
        assert ids(tmp_path, "billing__customers") == served
        config.write_text(config.read_text().replace('"billing"', '"a__b"'))
        bad = call([STATESYNC, "run", "--config", str(config), *paths(tmp_path)], sandbox)
        assert bad.returncode == 2 and "job.namespace" in bad.stderr, bad.stdout + bad.stderr
        with sqlite3.connect(tmp_path / "d.db") as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert table("customers") not in tables  # no job ever used the default here
