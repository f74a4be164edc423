"""Shared fixtures: real servers (Redis, the API emulator), started privately when needed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.redis_server import RedisServer, redis_answers


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis on 6379 when it answers, else a private one."""
    if redis_answers(6379):
        yield "redis://127.0.0.1:6379/0"
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for private Redis servers (restarts, persistence, faults)."""
    servers: list[RedisServer] = []

    def make(*args: str) -> RedisServer:
        server = RedisServer(tmp_path, *args)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix private to one test, so tests can share one server."""
    return f"statesync-test-{uuid.uuid4().hex[:12]}"


# Contract tests (from statesync.testing) that resume a walk from every state it passed:
# thorough, a second or more each per connector style, so outside the fast subset.
_SLOW_CONTRACT_TESTS = frozenset({"test_resume_from_every_midway_state"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if getattr(item, "originalname", item.name) in _SLOW_CONTRACT_TESTS:
            item.add_marker(pytest.mark.slow)
