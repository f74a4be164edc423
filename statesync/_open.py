"""Open stores, destinations and connectors from the URLs and names the CLI takes.

Backends are imported here lazily, so a missing extra fails with a message naming it
only when that backend is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from statesync._urls import check_destination_url, check_store_url
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.errors import ConfigurationError
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


CONNECTORS = ("stripe", "close", "graphql")


def open_connector(
    name: str, api_key: str | None, params: Mapping[str, Any], entities: Sequence[str]
) -> BaseConnector:
    """Build a shipped connector from a job's (secret-free) params and a key."""
    if not api_key:
        raise ConfigurationError(
            f"connector {name!r} needs an API key: set STATESYNC_API_KEY "
            "(keys are never stored with the job, so resume needs it again)"
        )
    if name == "stripe":
        from statesync.connectors.stripe import StripeConnector

        return StripeConnector(api_key, base_url=params.get("base_url"), entities=entities)
    if name == "close":
        from statesync.connectors.close import CloseConnector

        base = params.get("base_url")
        return CloseConnector(api_key, entities=entities, **({"base_url": base} if base else {}))
    if name == "graphql":
        return _graphql(api_key, params)
    raise ConfigurationError(f"unknown connector {name!r}; known: {', '.join(CONNECTORS)}")


def _graphql(api_key: str, params: Mapping[str, Any]) -> BaseConnector:
    from statesync.connectors._graphql_config import load_graphql_config
    from statesync.connectors.graphql import GraphQLConnector

    url, config_path = params.get("base_url"), params.get("graphql_config")
    if not url or not config_path:
        raise ConfigurationError(
            "the graphql connector needs --base-url (the endpoint) and --graphql-config FILE"
        )
    config = load_graphql_config(config_path)
    return GraphQLConnector(url, entities=config.entities, headers=config.headers(api_key))
