"""Default settings finish under each real API's way of refusing: Stripe's, GitHub's, Close's.

As a new user would run it: the emulator started from its command line with a rate
limit (``python -m statesync.sandbox --rate-limit ... --rate-limit-style ...``), the sync
from ``statesync run`` with no rate flag and no policy file (only a small page size, so
a small dataset makes many requests). Every entity must complete with the destination
exactly the emulator's records; the learning budget keeps the 429s after the first few
rare.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from statesync.sandbox import SandboxConfig
from support.cli import GRAPHQL_CONFIG as TICKETS_CONFIG
from support.crash import STATESYNC
from support.namespace import table

# Slow: whole syncs served over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

KEY = SandboxConfig().api_key


class Emulator:
    """A sandbox subprocess, driven over its control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url

    def log(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_sandbox/log").json())

    def ids(self, entity: str) -> list[str]:
        return sorted(r["id"] for r in httpx.get(f"{self.url}/_sandbox/snapshot/{entity}").json())


@contextmanager
def emulator(sizes: dict[str, int], *flags: str) -> Iterator[Emulator]:
    sized = [a for entity, n in sizes.items() for a in ("--size", f"{entity}={n}")]
    cmd = [sys.executable, "-m", "statesync.sandbox", "--port", "0", "--only", *sized, *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), proc.stderr.read() if proc.stderr else url
        yield Emulator(url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def sync(
    tmp: Path, em: Emulator, connector: str, base: str, entities: Sequence[str], *extra: str
) -> subprocess.CompletedProcess[str]:
    chosen = [a for e in entities for a in ("--entity", e)]
    cmd = [STATESYNC, "run", "--connector", connector, "--base-url", base, *chosen,
           "--job-id", "j1", "--store", f"sqlite:///{tmp / 's.db'}",
           "--dest", f"sqlite:///{tmp / 'd.db'}", "--page-size", "10", *extra]  # fmt: skip
    env = {**os.environ, "STATESYNC_API_KEY": KEY, "COLUMNS": "150"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


def stored_ids(tmp: Path, table: str) -> list[str]:
    with sqlite3.connect(tmp / "d.db") as db:
        return sorted(r[0] for r in db.execute(f'SELECT id FROM "{table}"'))


def refused_share_after_the_first(log: list[dict[str, Any]], first: int) -> float:
    """Share of refused requests once the first ``first`` refusals have taught the budget."""
    refused = [i for i, e in enumerate(log) if e["fault"] == "rate_limit"]
    if len(refused) <= first:
        return 0.0
    later = log[refused[first] :]
    hits: int = sum(e["fault"] == "rate_limit" for e in later)
    return hits / len(later)


def assert_done(done: subprocess.CompletedProcess[str], tmp: Path, entities: Sequence[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    status = subprocess.run(
        [STATESYNC, "status", "j1", "--store", f"sqlite:///{tmp / 's.db'}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = {e["entity"]: e["state"] for e in json.loads(status.stdout)["entities"]}
    assert rows == dict.fromkeys(entities, "complete")


STRIPE = ("customers", "invoices", "charges", "subscriptions")


def test_four_stripe_entities_under_a_5_per_second_limit(tmp_path: Path) -> None:
    sizes = dict.fromkeys(STRIPE, 80)
    flags = ("--rate-limit", "5", "--rate-limit-style", "stripe", "--retry-after", "1")
    with emulator(sizes, *flags) as em:
        done = sync(tmp_path, em, "stripe", em.url, STRIPE)
        assert_done(done, tmp_path, STRIPE)
        for entity in STRIPE:
            assert stored_ids(tmp_path, table(entity)) == em.ids(entity)
        log = em.log()
    assert any(e["status"] == 429 for e in log)  # the limit was met, and ridden out
    assert refused_share_after_the_first(log, 8) <= 0.25


# The CLI tests' tickets entity, and an offset-paged one.
GRAPHQL_CONFIG = (
    TICKETS_CONFIG
    + """
[entities.articles]
query = '''
query Articles($limit: Int, $offset: Int) {
  articles(limit: $limit, offset: $offset) { id title createdAt updatedAt }
}'''
path = "articles"
updated_field = "updatedAt"
order_field = "createdAt"
"""
)


def test_two_graphql_entities_under_a_github_style_3_per_second_limit(tmp_path: Path) -> None:
    config = tmp_path / "graphql.toml"
    config.write_text(GRAPHQL_CONFIG)
    sizes = {"graphql.tickets": 50, "graphql.articles": 40}
    with emulator(sizes, "--rate-limit", "3", "--rate-limit-style", "github") as em:
        done = sync(tmp_path, em, "graphql", f"{em.url}/graphql", ("tickets", "articles"),
                    "--graphql-config", str(config))  # fmt: skip
        assert_done(done, tmp_path, ("tickets", "articles"))
        for entity in ("tickets", "articles"):
            assert stored_ids(tmp_path, table(entity, "graphql")) == em.ids(f"graphql.{entity}")
        log = em.log()
    # Refused GitHub's way: an HTTP 200 with errors; the reset times were waited out.
    assert all(e["status"] == 200 for e in log)
    assert refused_share_after_the_first(log, 4) <= 0.25


CLOSE = ("lead", "contact", "opportunity", "activity_call", "user")


@pytest.mark.parametrize("separator", [",", ";"])
def test_five_close_entities_under_a_close_style_limit(tmp_path: Path, separator: str) -> None:
    sizes = {"close.lead": 40, "close.contact": 30, "close.opportunity": 30,
             "close.activity_call": 30, "close.user": 6}  # fmt: skip
    flags = ("--rate-limit", "6", "--rate-limit-style", "close",
             "--faults", json.dumps({"rate_limit_separator": separator}))  # fmt: skip
    with emulator(sizes, *flags) as em:
        done = sync(tmp_path, em, "close", f"{em.url}/api/v1", CLOSE)
        assert_done(done, tmp_path, CLOSE)
        for entity in CLOSE:
            assert stored_ids(tmp_path, table(entity, "close")) == em.ids(f"close.{entity}")
        log = em.log()
    # Close reports the quota on every answer: the budget paces by it, so few are refused.
    assert sum(e["status"] == 429 for e in log) <= max(3, len(log) // 10)
