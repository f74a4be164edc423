"""Open stores and destinations from the URLs the CLI takes (connectors: ``_plugins``).

Backends are imported here lazily, so a missing extra fails with a message naming it
only when that backend is asked for.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from statesync._urls import check_destination_url, check_store_url
from statesync.destination import Destination
from statesync.store import StateStore


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


def _split_prefix(url: str) -> tuple[str, str | None]:
    """Take statesync's own ``prefix`` query parameter out of a Redis URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = next((v for k, v in query if k == "prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def open_store(url: str) -> StateStore:
    """``sqlite:///path``, a plain file path, ``redis://…`` or ``memory:``."""
    check_store_url(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from statesync.stores.redis import RedisStateStore

        base, prefix = _split_prefix(url)
        return (
            RedisStateStore.from_url(base, prefix=prefix)
            if prefix
            else RedisStateStore.from_url(base)
        )
    if url == "memory:":
        from statesync.stores.memory import MemoryStateStore

        return MemoryStateStore()
    from statesync.stores.sqlite import SQLiteStateStore

    return SQLiteStateStore(_sqlite_path(url))


def open_destination(url: str) -> Destination:
    """``sqlite:///path`` or a plain file path (PostgreSQL comes with its extra)."""
    check_destination_url(url)
    if url.startswith(("postgres://", "postgresql://")):
        # ?schema=name is statesync's own parameter; the rest of the URL goes to libpq.
        from statesync.destinations.postgres import PostgresDestination

        return PostgresDestination.from_url(url)
    if url == "memory:":
        from statesync.destinations.memory import MemoryDestination

        return MemoryDestination()
    from statesync.destinations.sqlite import SQLiteDestination

    return SQLiteDestination(_sqlite_path(url))
