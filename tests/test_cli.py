"""The command line as an operator meets it: exit codes, status, progress, interrupts."""

from __future__ import annotations

import itertools
import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from support.cli import GRAPHQL_CONFIG, args, env, run_cmd, status
from support.crash import STATESYNC, wait_for_requests
from support.namespace import table

# Slow: drives the CLI in subprocesses (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

SIZES = {"customers": 60, "invoices": 30}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes=SIZES)) as running:
        yield running


def run(sandbox: Sandbox, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [*run_cmd(sandbox, tmp), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(sandbox), timeout=120)


def test_complete_job_exits_0_and_status_shows_every_entity(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    done = run(sandbox, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = status(tmp_path, "--json")
    rows = {e["entity"]: e for e in json.loads(out.stdout)["entities"]}
    assert rows["customers"]["state"] == "complete" and rows["customers"]["records"] == 60
    assert rows["invoices"]["api_calls"] == 3
    text = status(tmp_path).stdout
    assert "customers" in text and "complete" in text and "job j1" in text


def test_failed_entity_exits_1_and_status_names_the_error(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=1, times=99, status=503))
    failed = run(sandbox, tmp_path)
    assert failed.returncode == 1
    rows = {e["entity"]: e for e in json.loads(status(tmp_path, "--json").stdout)["entities"]}
    assert rows["invoices"]["state"] == "failed" and rows["invoices"]["attempts"] == 2
    assert rows["invoices"]["last_error_kind"] == "transient"
    assert "503" in rows["invoices"]["last_error"]
    assert rows["customers"]["state"] == "complete"
    assert "failed" in status(tmp_path).stdout


def test_sigint_exits_3_after_a_checkpoint_and_resume_finishes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.configure(latency=0.15)
    cmd = run_cmd(sandbox, tmp_path, "customers")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(sandbox)
    )
    wait_for_requests(sandbox, 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, out + err
    assert "statesync resume j1" in out
    rows = json.loads(status(tmp_path, "--json").stdout)["entities"]
    assert rows[0]["state"] in ("fetching", "chunk_done") and 0 < rows[0]["records"] < 60
    sandbox.faults.configure(latency=0)
    resumed = subprocess.run(
        [STATESYNC, "resume", "j1", *args(tmp_path)],
        capture_output=True,
        text=True,
        env=env(sandbox),
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(status(tmp_path, "--json").stdout)["entities"][0]["records"] == 60


def test_plain_output_when_not_a_terminal(sandbox: Sandbox, tmp_path: Path) -> None:
    out = run(sandbox, tmp_path).stdout
    assert "customers        chunk    0    2 pages     20 records" in out
    assert "\x1b[" not in out  # no escape codes in logs


def test_progress_bars_on_a_terminal(sandbox: Sandbox, tmp_path: Path) -> None:
    cmd = run_cmd(sandbox, tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a pseudo-terminal
        os.execve(cmd[0], cmd, env(sandbox))
    screen = _read_all(fd)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0, screen
    assert "━" in screen  # rich drew bars
    assert "rec/s" in screen and "60/60" in screen and "30/30" in screen
    assert "complete" in screen and "chunk" in screen
    assert "customers        chunk    0" not in screen  # the plain lines are for pipes only


def _read_all(fd: int) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def test_verbose_logs_events_without_the_key(sandbox: Sandbox, tmp_path: Path) -> None:
    done = run(sandbox, tmp_path, "-v")
    assert done.returncode == 0
    assert "customers: start pending -> fetching" in done.stderr
    assert "job j1 finished: customers=complete" in done.stderr
    assert sandbox.config.api_key not in done.stderr + done.stdout


def test_policy_file_drives_the_run(sandbox: Sandbox, tmp_path: Path) -> None:
    policies = tmp_path / "p.toml"
    policies.write_text(
        "[default]\nattempts = 3\ninitial_delay = 0.01\n"
        "[default.chunk]\nmax_iterations = 1\npage_size = 20\n"
        "[connectors.stripe.entities.invoices]\nattempts = 1\n"
    )
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=1, times=99, status=503))
    done = run(sandbox, tmp_path, "--policies", str(policies))
    assert done.returncode == 1
    rows = {e["entity"]: e for e in json.loads(status(tmp_path, "--json").stdout)["entities"]}
    assert rows["customers"]["chunk"] == 3 and rows["customers"]["api_calls"] == 3
    assert rows["invoices"]["attempts"] == 1
    assert len([e for e in sandbox.log() if e.path == "/v1/invoices"]) == 1


def test_cancel_drops_staging_and_keeps_the_live_table(sandbox: Sandbox, tmp_path: Path) -> None:
    assert run(sandbox, tmp_path).returncode == 0  # a good live table first
    sandbox.faults.add_rule(FaultRule(path_prefix="/v1/invoices", nth=2, times=99, status=401))
    cmd = [
        STATESYNC,
        "run",
        "--base-url",
        sandbox.url,
        "--entity",
        "invoices",
        "--job-id",
        "j2",
        *args(tmp_path),
    ]
    assert subprocess.run(cmd, capture_output=True, env=env(sandbox), timeout=60).returncode == 1
    cancel = [STATESYNC, "cancel", "j2", *args(tmp_path)[:4]]
    done = subprocess.run(cancel, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = subprocess.run(
        [STATESYNC, "status", "j2", "--json", *args(tmp_path)[:2]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(out.stdout)["entities"][0]["state"] == "cancelled"
    with sqlite3.connect(tmp_path / "d.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert not [t for t in tables if t.startswith(f"_stg_{table('invoices')}")]
        assert db.execute(f'SELECT count(*) FROM "{table("invoices")}"').fetchone()[0] == 30


def test_close_connector_from_the_command_line(tmp_path: Path) -> None:
    sizes = {"close.lead": 45, "close.user": 3}
    with Sandbox(SandboxConfig(sizes=sizes)) as sandbox:
        cmd = run_cmd(sandbox, tmp_path, "lead", "user", connector="close")
        done = subprocess.run(cmd, capture_output=True, text=True, env=env(sandbox), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = {e["entity"]: e for e in json.loads(status(tmp_path, "--json").stdout)["entities"]}
        assert rows["lead"]["records"] == 45 and rows["lead"]["total"] == 45
        assert rows["user"]["state"] == "complete"


def test_concurrency_and_rate_flags(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(sizes={"close.lead": 300})) as sandbox:
        sandbox.faults.configure(latency=0.05, rate_limit=40, burst=4)
        cmd = [
            *run_cmd(sandbox, tmp_path, "lead", connector="close"),
            "--max-iterations",
            "10",
            "--pages-in-flight",
            "4",
            "--rate-limit",
            "40",
            "--rate-burst",
            "4",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env(sandbox), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        log = sorted(
            (e for e in sandbox.log() if e.path.startswith("/api/v1/lead")), key=lambda e: e.started
        )
        assert not [e for e in log if e.status == 429]
        overlapping = sum(1 for a, b in itertools.pairwise(log) if b.started < a.ended)
        assert overlapping > 0  # pages really were in flight together
        with sqlite3.connect(tmp_path / "d.db") as db:
            ids = [r[0] for r in db.execute(f'SELECT id FROM "{table("lead", "close")}"')]
        assert sorted(ids) == sorted(r["id"] for r in sandbox.snapshot("close.lead"))


def test_graphql_connector_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "graphql.toml"
    config.write_text(GRAPHQL_CONFIG)
    with Sandbox(SandboxConfig(sizes={"graphql.tickets": 35})) as sandbox:
        cmd = [STATESYNC, "run", "--connector", "graphql", "--base-url",
               f"{sandbox.url}/graphql", "--graphql-config", str(config), "--entity", "tickets",
               "--job-id", "j1", *args(tmp_path)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=env(sandbox), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = json.loads(status(tmp_path, "--json").stdout)["entities"]
        assert rows[0]["state"] == "complete" and rows[0]["records"] == 35
        assert sandbox.config.api_key not in (tmp_path / "s.db").read_bytes().decode("latin-1")


def test_a_bad_graphql_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "graphql.toml"
    config.write_text(GRAPHQL_CONFIG.replace("updated_field", "updated_feild"))
    cmd = [STATESYNC, "run", "--connector", "graphql", "--base-url", "http://127.0.0.1:9/graphql",
           "--graphql-config", str(config), "--entity", "tickets", *args(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STATESYNC_API_KEY": "k"})  # fmt: skip
    assert done.returncode == 2  # a configuration error, and nothing written
    assert "entities.tickets.updated_feild: unknown setting" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "d.db").exists()
