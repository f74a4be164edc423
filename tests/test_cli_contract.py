"""The CLI's contract, table-driven: every bad input exits 2, names the field, and writes
nothing (no file, no job, no Redis key, no table); exit codes and ``--json`` shapes."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from support.crash import STATESYNC, wait_for_requests
from support.namespace import table
from support.postgres import pg_schema, postgres_dsn  # noqa: F401 - fixtures

# Slow: drives the CLI in subprocesses (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

ENV = {**os.environ, "STATESYNC_API_KEY": "sk_test_contract", "COLUMNS": "150"}


def files(tmp: Path) -> list[str]:
    return [f"sqlite:///{tmp / 's.db'}", f"sqlite:///{tmp / 'd.db'}"]


def run_line(store: str, dest: str, *extra: str) -> list[str]:
    base = ["run", "--base-url", "http://127.0.0.1:9", "--entity", "customers"]
    return [*base, "--store", store, "--dest", dest, *extra]


def cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STATESYNC, *args], capture_output=True, text=True, env=env or ENV, timeout=60
    )


# (id, extra args for `run`, the field the message must name)
BAD_RUN = [
    ("parallel entities 0", ["--parallel-entities", "0"], "--parallel-entities"),
    ("deprecated concurrency 0", ["--concurrency", "0"], "--parallel-entities"),
    ("page size 0", ["--page-size", "0"], "--page-size"),
    ("max iterations 0", ["--max-iterations", "0"], "--max-iterations"),
    ("lease ttl -1", ["--lease-ttl", "-1"], "--lease-ttl"),
    ("lease ttl 0", ["--lease-ttl", "0"], "--lease-ttl"),
    ("pages in flight 0", ["--pages-in-flight", "0"], "--pages-in-flight"),
    ("attempts 0", ["--attempts", "0"], "--attempts"),
    ("min iterations 0", ["--min-iterations", "0"], "--min-iterations"),
    ("rate limit 0", ["--rate-limit", "0"], "--rate-limit"),
    ("rate burst 0", ["--rate-burst", "0"], "--rate-burst"),
    ("target chunk seconds -2", ["--target-chunk-seconds", "-2"], "--target-chunk-seconds"),
    ("wait lease -1", ["--wait-lease", "-1"], "--wait-lease"),
    ("page size not a number", ["--page-size", "many"], "--page-size"),
    ("mysql store", ["--store", "mysql://u@h/db"], "--store"),
    ("mysql dest", ["--dest", "mysql://u@h/db"], "--dest"),
    ("dest names no file", ["--dest", "sqlite:///"], "--dest"),
    ("redis prefix with braces", ["--store", "redis://127.0.0.1:6379/0?prefix={x}"], "--store"),
    ("empty redis prefix", ["--store", "redis://127.0.0.1:6379/0?prefix="], "--store"),
    ("entity with sql", ["--entity", "customers; drop table x"], "--entity"),
    ("reserved entity", ["--entity", "_stg_x"], "--entity"),
    ("entity twice", ["--entity", "invoices", "--entity", "invoices"], "--entity"),
    ("job id with #", ["--job-id", "nightly#2"], "--job-id"),
    ("bad namespace", ["--namespace", "my-shop"], "--namespace"),
    ("unknown connector", ["--connector", "nosuch"], "connector 'nosuch'"),
    ("unknown mode", ["--mode", "sometimes"], "--mode"),
    ("missing policy file", ["--policies", "/nonexistent/p.toml"], "--policies"),
]


def _assert_nothing_written(tmp: Path) -> None:
    assert sorted(p.name for p in tmp.iterdir() if p.suffix == ".db") == []


@pytest.mark.parametrize(("extra", "field"), [c[1:] for c in BAD_RUN], ids=[c[0] for c in BAD_RUN])
def test_bad_run_input_exits_2_names_the_field_and_writes_nothing(
    tmp_path: Path, extra: list[str], field: str
) -> None:
    done = cli(run_line(*files(tmp_path), *extra))
    assert done.returncode == 2, done.stdout + done.stderr
    assert field in done.stderr and "Traceback" not in done.stderr
    _assert_nothing_written(tmp_path)
    as_json = cli(run_line(*files(tmp_path), *extra, "--json"))
    assert as_json.returncode == 2
    payload = json.loads(as_json.stdout)  # one object, nothing else on stdout
    assert payload["exit_code"] == 2 and field in json.dumps(payload["error"])
    _assert_nothing_written(tmp_path)


def test_bad_policy_file_and_missing_key_write_nothing(tmp_path: Path) -> None:
    policies = tmp_path / "p.toml"
    policies.write_text("[default]\nattemps = 3\n")
    done = cli(run_line(*files(tmp_path), "--policies", str(policies)))
    assert done.returncode == 2 and "default.attemps" in done.stderr
    no_key = {k: v for k, v in ENV.items() if k != "STATESYNC_API_KEY"}
    done = cli(run_line(*files(tmp_path)), env=no_key)
    assert done.returncode == 2 and "STATESYNC_API_KEY" in done.stderr
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("command", ["resume", "status", "cancel"])
def test_commands_on_an_unknown_job_create_nothing(tmp_path: Path, command: str) -> None:
    store, dest = files(tmp_path)
    args = [command, "nojob", "--store", store]
    if command != "status":
        args += ["--dest", dest]
    done = cli(args)
    assert done.returncode == 2 and "no job 'nojob'" in done.stderr
    as_json = cli([*args, "--json"])
    assert json.loads(as_json.stdout)["error"]["type"] == "UnknownJobError"
    _assert_nothing_written(tmp_path)


def test_status_instance_must_be_positive(tmp_path: Path) -> None:
    done = cli(["status", "j", "--store", files(tmp_path)[0], "--instance", "0", "--json"])
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["param"] == "--instance"


def test_status_without_a_job_prints_json_jobs(tmp_path: Path) -> None:
    done = cli(["status", "--store", files(tmp_path)[0], "--json"])
    assert done.returncode == 0 and json.loads(done.stdout) == {"jobs": []}
    _assert_nothing_written(tmp_path)


def test_bad_input_leaves_no_redis_key_and_no_postgres_table(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    postgres_dsn: str,
    pg_schema: str,
) -> None:
    store = f"{redis_url}?prefix={key_prefix}"
    dest = f"{postgres_dsn}?schema={pg_schema}"
    for extra in (
        ["--parallel-entities", "0"],
        ["--entity", "customers; drop table x"],
        ["--namespace", "no-dash"],
        ["--policies", str(tmp_path / "missing.toml")],
    ):
        assert cli(run_line(store, dest, *extra)).returncode == 2
    for command in ("resume", "cancel"):
        assert cli([command, "nojob", "--store", store, "--dest", dest]).returncode == 2
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match=f"{key_prefix}:*")) == []
    client.close()
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (pg_schema,)
        ).fetchall()
    assert tables == []


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"customers": 30, "invoices": 20})) as running:
        yield running


def sandbox_run(sandbox: Sandbox, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**ENV, "STATESYNC_API_KEY": sandbox.config.api_key}
    store, dest = files(tmp)
    args = ["run", "--base-url", sandbox.url, "--entity", "customers", "--entity", "invoices"]
    args += ["--store", store, "--dest", dest, "--page-size", "10", "--attempts", "1", *extra]
    return cli(args, env=env)


def test_cancel_of_an_unknown_entity_fails_and_changes_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=1, times=99, status=401))
    assert sandbox_run(sandbox, tmp_path, "--job-id", "j").returncode == 1
    store, dest = files(tmp_path)
    done = cli(["cancel", "j", "--entity", "nosuch", "--store", store, "--dest", dest, "--json"])
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "UnknownEntityError" and "nosuch" in error["message"]
    status = json.loads(cli(["status", "j", "--store", store, "--json"]).stdout)
    states = {e["entity"]: e["state"] for e in status["entities"]}
    assert states == {"customers": "complete", "invoices": "failed"}


def test_run_json_shape_and_failed_exit(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=1, times=99, status=401))
    done = sandbox_run(sandbox, tmp_path, "--job-id", "j", "--json")
    assert done.returncode == 1
    payload = json.loads(done.stdout)
    assert payload["exit_code"] == 1 and payload["instance"] == 1
    outcomes = {r["entity"]: (r["outcome"], r["error_kind"]) for r in payload["results"]}
    assert outcomes == {"customers": ("complete", None), "invoices": ("failed", "auth")}
    entities = {e["entity"]: e for e in payload["status"]["entities"]}
    assert entities["customers"]["records"] == 30 and entities["customers"]["last_error"] is None
    assert entities["invoices"]["liveness"] == "finished"
    assert payload["resume"].startswith("statesync resume j --store ")


def test_a_store_outage_mid_run_exits_3_with_a_hint_that_works(
    sandbox: Sandbox, tmp_path: Path, redis_server: Callable[..., Any]
) -> None:
    server = redis_server("--appendonly", "yes", "--appendfsync", "always")
    store, dest = f"{server.url}?prefix=outage", files(tmp_path)[1]
    sandbox.faults.configure(latency=0.1)
    env = {**ENV, "STATESYNC_API_KEY": sandbox.config.api_key}
    args = ["run", "--base-url", sandbox.url, "--entity", "customers", "--job-id", "j"]
    args += ["--store", store, "--dest", dest, "--page-size", "5", "--lease-ttl", "2"]
    proc = subprocess.Popen(
        [STATESYNC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    wait_for_requests(sandbox, 2)
    server.stop()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, out + err  # interrupted: nothing failed
    hint = next(line for line in (out + err).splitlines() if "continue with:" in line)
    command = shlex.split(hint.split("continue with: ", 1)[1])
    assert command[:3] == ["statesync", "resume", "j"] and command[4] == store
    server.start()
    sandbox.faults.configure(latency=0)
    resumed = subprocess.run(
        [STATESYNC, *command[1:]], capture_output=True, text=True, env=env, timeout=90
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with sqlite3.connect(tmp_path / "d.db") as db:
        assert db.execute(f'SELECT count(*) FROM "{table("customers")}"').fetchone()[0] == 30
