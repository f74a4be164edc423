"""``python -m statesync.sandbox`` prints its URL, serves, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.sandbox_lib import AUTH

# Slow: drives the CLI in subprocesses (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_subprocess_prints_url_and_serves() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "statesync.sandbox",
            "--only",
            "--size",
            "customers=30",
            "--size",
            "refunds=4",
            "--seed",
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as http:
            assert len(http.get("/v1/customers", params={"limit": 100}).json()["data"]) == 30
            assert len(http.get("/v1/refunds").json()["data"]) == 4
            assert http.get("/v1/charges").status_code == 404
            http.post(
                "/_sandbox/faults", json={"rules": [{"path_prefix": None, "nth": 1, "status": 503}]}
            )
            assert http.get("/v1/refunds").status_code == 503
            assert [e["status"] for e in http.get("/_sandbox/log").json()][-1] == 503
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
