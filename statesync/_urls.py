"""Store and destination URLs checked by scheme name before anything is opened.

``mysql://…`` must not become a SQLite file named ``mysql:``: a URL with a scheme we do
not know is refused, naming the schemes we do. Plain paths (no ``://``) stay SQLite
files, as before.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlsplit

from statesync.errors import ConfigurationError

STORE_SCHEMES: Final = ("sqlite", "redis", "rediss", "unix")
DESTINATION_SCHEMES: Final = ("sqlite", "postgres", "postgresql")


def _scheme(url: str) -> str | None:
    if url == "memory:":
        return "memory"
    if "://" not in url:
        return None  # a plain file path
    return url.split("://", 1)[0].lower()


def check_store_url(url: str) -> str:
    """``url`` if it names a store we can open; ConfigurationError naming it otherwise."""
    scheme = _scheme(url)
    if scheme not in (None, "memory", *STORE_SCHEMES):
        raise ConfigurationError(
            f"store URL scheme {scheme!r} is not supported; use sqlite:///path, "
            "redis://host:port/db (rediss://, unix://) or memory:"
        )
    if scheme in ("redis", "rediss", "unix"):
        _check_prefix(url)
    if scheme in (None, "sqlite"):
        _check_path(url, "store")
    return url


def check_destination_url(url: str) -> str:
    scheme = _scheme(url)
    if scheme not in (None, "memory", *DESTINATION_SCHEMES):
        raise ConfigurationError(
            f"destination URL scheme {scheme!r} is not supported; use sqlite:///path, "
            "postgresql://user@host/db (?schema=name) or memory:"
        )
    if scheme in ("postgres", "postgresql"):
        from statesync.destinations.postgres import validate_schema

        schema = dict(parse_qsl(urlsplit(url).query)).get("schema")
        if schema is not None:
            validate_schema(schema)
    if scheme in (None, "sqlite"):
        _check_path(url, "destination")
    return url


def _check_prefix(url: str) -> None:
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    for key, value in query:
        if key == "prefix" and (not value or "{" in value or "}" in value):
            raise ConfigurationError(
                f"store URL ?prefix={value!r} is invalid: a key prefix must be non-empty "
                "and brace-free"
            )


def _check_path(url: str, what: str) -> None:
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    if not path or path.endswith("/"):
        raise ConfigurationError(f"{what} URL {url!r} names no SQLite file")
