"""Identifier rules shared by the SQL destinations (SQLite now, PostgreSQL later).

Entity names become table names, so they are validated against a strict pattern *and*
still double-quoted wherever they reach SQL. Job ids may hold any character, so they
never reach SQL text at all: only a hash of them (:func:`job_key`) does.
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import UTC, datetime

from statesync.errors import ConfigurationError, DestinationError

MAX_IDENTIFIER = 63
"""PostgreSQL's identifier limit (NAMEDATALEN - 1); SQLite has none, we keep one rule."""

_ENTITY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

RESERVED_PREFIXES = ("_stg_", "_statesync_", "sqlite_")
"""Prefixes of our staging and meta tables and SQLite's own: an entity named so could
overwrite them (or be refused by SQLite), so it is rejected up front."""

_KEY_LEN = 16


def validate_entity(entity: str) -> str:
    """Return ``entity`` if it is a safe table name, else raise ConfigurationError."""
    if not isinstance(entity, str) or _ENTITY.fullmatch(entity) is None:
        raise ConfigurationError(
            f"invalid entity name {entity!r}: it must match "
            f"^[A-Za-z_][A-Za-z0-9_]{{0,62}}$ (it becomes a table name)"
        )
    if entity.lower().startswith(RESERVED_PREFIXES):
        raise ConfigurationError(
            f"invalid entity name {entity!r}: names starting with "
            f"{', '.join(RESERVED_PREFIXES)} are reserved"
        )
    return entity


def quote(identifier: str) -> str:
    """Double-quote an identifier (defence in depth: names are validated first)."""
    return '"' + identifier.replace('"', '""') + '"'


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@functools.lru_cache(maxsize=1024)  # called per page: hash each job id once
def job_key(job_id: str) -> str:
    """A short, SQL-safe stand-in for ``job_id`` (64 bits of its SHA-256)."""
    return _digest(job_id)[:_KEY_LEN]


@functools.lru_cache(maxsize=1024)
def staging_table(entity: str, job_id: str) -> str:
    """The staging table private to ``job_id``'s full sync of ``entity``.

    ``_stg_{entity}_{job_key}`` when that fits in :data:`MAX_IDENTIFIER`; a long entity
    name is cut and the hash then covers entity and job, so names stay unique.
    """
    name = f"_stg_{validate_entity(entity)}_{job_key(job_id)}"
    if len(name) <= MAX_IDENTIFIER:
        return name
    key = _digest(f"{entity}\x00{job_id}")[:_KEY_LEN]
    head = MAX_IDENTIFIER - len("_stg__") - _KEY_LEN
    return f"_stg_{entity[:head]}_{key}"


def check_staging(table: str) -> str:
    """``table``, refused unless it names a staging table (gc must never drop a live one)."""
    if not table.startswith("_stg_"):
        raise DestinationError(f"{table!r} is not a staging table")
    return table


def iso(moment: datetime) -> str:
    """A UTC ISO-8601 string of fixed width, so text order is time order in SQL.

    Naive datetimes are taken to be UTC.
    """
    if moment.tzinfo is UTC:  # the common case, and this is on the hot path
        return moment.isoformat(timespec="microseconds")
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    """The inverse of :func:`iso`: always tz-aware."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
