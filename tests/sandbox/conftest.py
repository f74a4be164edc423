"""Fixtures for the sandbox tests: a fresh in-process sandbox and an httpx client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from statesync.sandbox import Sandbox, SandboxConfig
from support.sandbox_lib import AUTH


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig()) as running:
        yield running


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=AUTH, timeout=10) as http:
        yield http
