"""``--json`` on the commands that print something else by default: one JSON object each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from statesync._cli import main


def test_demo_json_is_every_jobs_status(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = CliRunner().invoke(main, ["demo", "--db", str(db), "--records", "30", "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    assert out["ok"] is True
    connectors = {job["connector"] for job in out["jobs"]}
    assert connectors == {"stripe", "close", "graphql"}
    states = {e["state"] for job in out["jobs"] for e in job["entities"]}
    assert states == {"complete"}


def test_diagram_json_carries_the_text_or_names_the_file(tmp_path: Path) -> None:
    shown = CliRunner().invoke(main, ["diagram", "--format", "mermaid", "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["format"] == "mermaid" and body["diagram"].startswith("stateDiagram-v2")
    target = tmp_path / "machine.mmd"
    written = CliRunner().invoke(main, ["diagram", "-o", str(target), "--json"])
    assert written.exit_code == 0, written.output
    assert json.loads(written.output) == {"format": "mermaid", "written": [str(target)]}
    assert target.read_text().startswith("stateDiagram-v2")


@pytest.mark.slow
def test_sandbox_json_announces_its_address() -> None:
    statesync = Path(sys.executable).with_name("statesync")
    proc = subprocess.Popen(
        [str(statesync), "sandbox", "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["url"].startswith("http://127.0.0.1:")
        import httpx

        assert httpx.get(f"{first['url']}/_sandbox/faults", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
