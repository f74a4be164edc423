"""The `statesync` CLI as the CLI tests drive it: flags, environment, status (stripe)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from statesync.sandbox import Sandbox
from support.crash import STATESYNC


def args(tmp: Path) -> list[str]:
    return [
        "--store",
        f"sqlite:///{tmp / 's.db'}",
        "--dest",
        f"sqlite:///{tmp / 'd.db'}",
        "--max-iterations",
        "2",
        "--page-size",
        "10",
        "--attempts",
        "2",
    ]


def env(sandbox: Sandbox) -> dict[str, str]:
    return {**os.environ, "STATESYNC_API_KEY": sandbox.config.api_key, "COLUMNS": "150"}


def run_cmd(sandbox: Sandbox, tmp: Path, *entities: str, connector: str = "stripe") -> list[str]:
    names = entities or ("customers", "invoices")
    chosen = [a for e in names for a in ("--entity", e)]
    base = f"{sandbox.url}/api/v1" if connector == "close" else sandbox.url
    return [
        STATESYNC,
        "run",
        "--connector",
        connector,
        "--base-url",
        base,
        *chosen,
        "--job-id",
        "j1",
        *args(tmp),
    ]


def status(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STATESYNC, "status", "j1", "--store", f"sqlite:///{tmp / 's.db'}", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


GRAPHQL_CONFIG = """
[entities.tickets]
query = '''
query Tickets($first: Int, $after: String) {
  workspace(slug: "acme") {
    tickets(first: $first, after: $after) {
      nodes { id updatedAt }
      pageInfo { hasNextPage endCursor }
    }
  }
}'''
path = "workspace.tickets"
updated_field = "updatedAt"
"""
