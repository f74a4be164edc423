"""REST jobs and plugins from the command line: job config files, resume without flags,
SIGKILL crash-resume, load-time errors, a third-party plugin through run/resume/Inngest."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from statesync.testing import crash_then_resume, statesync
from statesync.testing._crash import STATESYNC
from support.cli import GRAPHQL_CONFIG
from support.crash import wait_for_requests
from support.namespace import table
from support.rest_styles import rest_options

# Slow: drives the CLI in subprocesses (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("rest_*.toml"))
SIZE = 140


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={"rest.issues": SIZE, "rest.widgets": 90})) as running:
        yield running


def clean_env(sandbox: Sandbox, **extra: str) -> dict[str, str]:
    """No STATESYNC_API_KEY: REST jobs read the variables their config names."""
    env = {k: v for k, v in os.environ.items() if k != "STATESYNC_API_KEY"}
    return {**env, "SANDBOX_TOKEN": sandbox.config.api_key, "COLUMNS": "150", **extra}


def rows(db: Path, table: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(f'SELECT id FROM "{table}"')]


def assert_exact(
    sandbox: Sandbox, db: Path, entity: str = "issues", connector: str = "rest"
) -> None:
    got = rows(db, table(entity, connector))
    assert len(got) == len(set(got)), "duplicated rows"
    assert set(got) == {r["id"] for r in sandbox.snapshot(f"rest.{entity}")}


def job_state(cwd: Path, job: str) -> dict[str, Any]:
    out = statesync("status", job, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    parsed: dict[str, Any] = json.loads(out.stdout)
    return parsed


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_runs_to_an_exact_copy(
    sandbox: Sandbox, tmp_path: Path, example: Path
) -> None:
    done = statesync(
        "run", "--config", str(example), "--base-url", f"{sandbox.url}/rest",
        env=clean_env(sandbox), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    job = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("job "))
    status = job_state(tmp_path, job)
    assert [e["state"] for e in status["entities"]] == ["complete"]
    assert f"config: {example}" in status["config"] and "--base-url" not in status["config"]
    assert_exact(sandbox, tmp_path / "statesync-data.db")
    stored = (tmp_path / "statesync-state.db").read_bytes().decode("latin-1")
    assert sandbox.config.api_key not in stored


def test_sigint_then_resume_with_no_flag_completes_exactly(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.configure(latency=0.05)
    example = ROOT / "examples" / "rest_issues.toml"
    cmd = [STATESYNC, "run", "--config", str(example), "--base-url", f"{sandbox.url}/rest",
           "--page-size", "10"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=clean_env(sandbox), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_requests(sandbox, 4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, out + err
    assert "statesync resume issues" in out
    sandbox.faults.configure(latency=0.0)
    resumed = statesync("resume", "issues", env=clean_env(sandbox), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_exact(sandbox, tmp_path / "statesync-data.db")
    status = job_state(tmp_path, "issues")
    assert status["entities"][0]["records"] == SIZE
    assert "--page-size=10" in status["config"]  # the run's override, kept for the resume
    sizes = {e.query.get("per_page") for e in sandbox.log()}
    assert sizes == {"10"}, f"resume did not keep the run's page size: {sizes}"


def write_config(tmp: Path, sandbox: Sandbox, style: str) -> Path:
    options = rest_options(sandbox.url, style)
    entity = options.pop("entities")["issues"]
    lines = [
        "[connector]", 'name = "rest"', "[connector.options]",
        f'base_url = "{options["base_url"]}"',
        'auth = { type = "bearer", token_env = "SANDBOX_TOKEN" }',
        "[entities.issues]", *(f"{k} = {_toml(v)}" for k, v in entity.items()),
        "[policies.default]", "attempts = 3",
        "[policies.default.chunk]", "max_iterations = 3", "page_size = 10", "lease_ttl = 1.0",
        "[destination]", f'url = "sqlite:///{tmp / "data.db"}"',
        "[run]", "lease_wait = 30.0",
    ]  # fmt: skip
    path = tmp / f"{style}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


CRASHES = ["before_fetch:3", "after_fetch:4", "in_page_write:2", "after_checkpoint:3",
           "before_transition:2", "in_finalize:1", "after_finalize:1"]  # fmt: skip


@pytest.mark.parametrize("point", CRASHES)
@pytest.mark.parametrize("style", ["offset", "link"])
def test_sigkill_then_resume_is_exact(
    sandbox: Sandbox, tmp_path: Path, style: str, point: str
) -> None:
    config = write_config(tmp_path, sandbox, style)
    store = ["--store", f"sqlite:///{tmp_path / 'state.db'}"]
    crash_then_resume(
        ["--config", str(config), *store], "crashjob", point, resume_args=store,
        env=clean_env(sandbox),
    )  # fmt: skip
    assert_exact(sandbox, tmp_path / "data.db")


BAD = [
    ("entities.issues.paginator.type", 'paginator = { type = "link_header" }',
     'paginator = { type = "links" }'),
    ("entities.issues.page_size_param", 'page_size_param = "per_page"', "page_size_param = 5"),
    ("entities.issues.pagesize", 'page_size_param = "per_page"', 'pagesize = "per_page"'),
    ("entities.issues.paginator.next_url_path", 'paginator = { type = "link_header" }',
     'paginator = { type = "next_url" }'),
    ("entities.issues.paginator", 'method = "GET"', 'method = "POST"'),
    ("entities.issues.created_field", 'paginator = { type = "link_header" }',
     'paginator = { type = "offset" }\nanchored_note = 1'),
    ("connector.options.auth.token_env", 'token_env = "SANDBOX_TOKEN"',
     'token_env = "NOT_SET_ANYWHERE"'),
    ("connector.nmae", 'name = "rest"', 'nmae = "rest"'),
]  # fmt: skip
GOOD = """
[connector]
name = "rest"
[connector.options]
base_url = "BASE"
auth = { type = "bearer", token_env = "SANDBOX_TOKEN" }
[entities.issues]
path = "/link/issues"
method = "GET"
page_size_param = "per_page"
paginator = { type = "link_header" }
"""


@pytest.mark.parametrize(("where", "old", "new"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_fails_at_load_naming_file_and_key(
    sandbox: Sandbox, tmp_path: Path, where: str, old: str, new: str
) -> None:
    text = GOOD.replace("BASE", f"{sandbox.url}/rest")
    assert statesync("run", "--config", _write(tmp_path, "ok.toml", text),
                     env=clean_env(sandbox), cwd=tmp_path).returncode == 0  # fmt: skip
    before = len(sandbox.log())
    (tmp_path / "statesync-state.db").unlink()
    bad = _write(tmp_path, "bad.toml", text.replace(old, new, 1).replace("anchored_note = 1", ""))
    done = statesync("run", "--config", bad, env=clean_env(sandbox), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr  # a configuration error
    assert "bad.toml" in done.stderr and where in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert len(sandbox.log()) == before, "a request was sent"
    assert not (tmp_path / "statesync-state.db").exists(), "a store (and job) was created"


def _write(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


WIDGETS = """
[connector]
name = "widgets"
[connector.options]
base_url = "BASE"
entities = ["widgets"]
[policies.default.chunk]
max_iterations = 2
page_size = 10
lease_ttl = 1.0
[destination]
url = "sqlite:///widgets.db"
[run]
lease_wait = 30.0
"""


def test_a_plugin_runs_and_resumes_from_the_cli(sandbox: Sandbox, tmp_path: Path) -> None:
    config = _write(tmp_path, "widgets.toml", WIDGETS.replace("BASE", sandbox.url))
    env = clean_env(sandbox, WIDGETS_TOKEN=sandbox.config.api_key)
    crash_then_resume(["--config", config], "w1", "after_checkpoint:3", env=env, cwd=tmp_path)
    assert_exact(sandbox, tmp_path / "widgets.db", "widgets", "widgets")
    listed = statesync("status", cwd=tmp_path).stdout
    assert "w1  widgets  widgets" in listed


def test_a_plugin_by_module_path_and_an_unknown_name(sandbox: Sandbox, tmp_path: Path) -> None:
    env = clean_env(sandbox, WIDGETS_TOKEN=sandbox.config.api_key)
    text = WIDGETS.replace("BASE", sandbox.url)
    text = text.replace('name = "widgets"', 'name = "statesync_widgets:gadgets"')
    config = _write(tmp_path, "m.toml", text)
    crash_then_resume(["--config", config], "g1", "after_checkpoint:2", env=env, cwd=tmp_path)
    assert_exact(sandbox, tmp_path / "widgets.db", "widgets", "gadgets")  # the built name
    assert "g1  gadgets  widgets" in statesync("status", cwd=tmp_path).stdout
    unknown = statesync("run", "--connector", "gizmos", "--entity", "x", env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown connector 'gizmos'; installed: close, graphql, rest, stripe, widgets" in (
        unknown.stderr
    )


GRAPHQL_JOB = (
    '''
[connector]
name = "graphql"
[connector.options]
base_url = "BASE/graphql"'''
    + GRAPHQL_CONFIG  # the CLI tests' tickets entity
    + """[policies.default.chunk]
max_iterations = 2
page_size = 10
[destination]
url = "sqlite:///g.db"
"""
)

CLOSE_JOB = """
[job]
entities = ["lead"]
[connector]
name = "close"
api_key_env = "CLOSE_KEY"
[connector.options]
base_url = "BASE/api/v1"
skip_cap = 30
fields = { lead = ["display_name"] }
[policies.default.chunk]
max_iterations = 2
page_size = 10
[destination]
url = "sqlite:///c.db"
"""


def test_graphql_and_close_jobs_from_one_config_file_resume_without_flags(
    tmp_path: Path,
) -> None:
    sizes = {"graphql.tickets": 45, "close.lead": 70}
    with Sandbox(SandboxConfig(sizes=sizes)) as sandbox:
        sandbox.faults.add_rule(FaultRule(path_prefix=None, nth=3, times=99, status=401))
        env = clean_env(sandbox, STATESYNC_API_KEY=sandbox.config.api_key,
                        CLOSE_KEY=sandbox.config.api_key)  # fmt: skip
        for name, text in (("g", GRAPHQL_JOB), ("c", CLOSE_JOB)):
            config = _write(tmp_path, f"{name}.toml", text.replace("BASE", sandbox.url))
            failed = statesync("run", "--config", config, "--job-id", name, env=env, cwd=tmp_path)
            assert failed.returncode == 1, failed.stdout + failed.stderr  # the 401s
            sandbox.faults.clear_rules()
            resumed = statesync("resume", name, "--retry-failed", env=env, cwd=tmp_path)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            sandbox.faults.add_rule(FaultRule(path_prefix=None, nth=3, times=99, status=401))
        sandbox.faults.clear_rules()
        with sqlite3.connect(tmp_path / "g.db") as db:
            got = [r[0] for r in db.execute(f'SELECT id FROM "{table("tickets", "graphql")}"')]
        assert sorted(got) == sorted(r["id"] for r in sandbox.snapshot("graphql.tickets"))
        with sqlite3.connect(tmp_path / "c.db") as db:
            leads = [r[0] for r in db.execute(f'SELECT id FROM "{table("lead", "close")}"')]
        assert sorted(leads) == sorted(r["id"] for r in sandbox.snapshot("close.lead"))
        skips = [int(e.query["_skip"]) for e in sandbox.log() if "_skip" in e.query]
        assert max(skips) <= 30, "the stored skip_cap was not used on resume"
        assert {e.query.get("_fields") for e in sandbox.log() if "_skip" in e.query} == {
            "display_name,id,date_created,date_updated"
        }


def test_the_readme_shows_the_example_files_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = ROOT / "examples" / "rest_issues.toml"
    assert f"```toml\n{shown.read_text()}```" in readme
    for example in EXAMPLES:
        assert f"examples/{example.name}" in readme, f"{example.name} is not in the README"


def test_the_crash_resume_fixture_of_the_pytest_plugin(
    sandbox: Sandbox, tmp_path: Path, crash_resume: Any
) -> None:
    config = write_config(tmp_path, sandbox, "cursor")
    store = ["--store", "sqlite:///{tmp}/fixture-state.db"]
    outcome = crash_resume(
        ["--config", str(config), *store], "fx", "after_page_write:3", resume_args=store,
        env=clean_env(sandbox),
    )  # fmt: skip
    assert outcome.resumed.returncode == 0
    assert_exact(sandbox, tmp_path / "data.db")


def test_connector_options_from_the_command_line_are_stored_for_resume(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(sizes={"close.lead": 60})) as sandbox:
        sandbox.faults.add_rule(FaultRule(path_prefix=None, nth=4, times=99, status=401))
        env = clean_env(sandbox, STATESYNC_API_KEY=sandbox.config.api_key)
        store = [
            "--store",
            f"sqlite:///{tmp_path / 's.db'}",
            "--dest",
            f"sqlite:///{tmp_path / 'd.db'}",
        ]
        failed = statesync(
            "run", "--connector", "close", "--base-url", f"{sandbox.url}/api/v1", "--entity",
            "lead", "--option", "skip_cap=25", "--option", "fields.lead=['display_name']",
            "--page-size", "10", "--job-id", "cl", *store, env=env,
        )  # fmt: skip
        assert failed.returncode == 1, failed.stdout + failed.stderr
        sandbox.faults.clear_rules()
        resumed = statesync("resume", "cl", "--retry-failed", "--page-size", "10", *store, env=env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        with sqlite3.connect(tmp_path / "d.db") as db:
            leads = [r[0] for r in db.execute(f'SELECT id FROM "{table("lead", "close")}"')]
        assert sorted(leads) == sorted(r["id"] for r in sandbox.snapshot("close.lead"))
        assert max(int(e.query["_skip"]) for e in sandbox.log()) <= 25
        assert {e.query["_fields"] for e in sandbox.log()} == {
            "display_name,id,date_created,date_updated"
        }
        bad = statesync("run", "--connector", "close", "--entity", "lead", "--option", "oops",
                        *store, env=env)  # fmt: skip
        assert bad.returncode == 2 and "is not KEY=VALUE" in bad.stderr
