"""Destination namespaces: each job writes into its own, so two sources never share a table.

A namespace is a PostgreSQL schema (:meth:`PostgresDestination.with_schema`) or, in
SQLite and memory, a table prefix: entity ``orders`` of namespace ``shop`` lands in table
``shop__orders`` (staging, fences and watermarks follow, as they are keyed by that name).
The job stores its namespace (``JobSpec.params["namespace"]``), so resume, status and
cancel find the same tables. ``None`` is the single shared namespace of older releases:
a stored job without the param keeps writing there. New jobs default to their
connector's name (:func:`default_namespace`); ``""`` asks for the shared tables.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from statesync._models import JobSpec, Record, SyncMode
from statesync.destination import (
    CheckpointingDestination,
    Destination,
    StagedTable,
    StagingCheck,
)
from statesync.destinations._names import RESERVED_PREFIXES, validate_entity
from statesync.errors import ConfigurationError

PARAM = "namespace"
SEPARATOR = "__"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}")


@runtime_checkable
class Namespaced(Protocol):
    """A destination with its own notion of namespace (PostgreSQL: a schema)."""

    def namespace(self, name: str) -> Destination: ...


def validate_namespace(name: str) -> str:
    """``name`` if it can name a schema or prefix tables, else ConfigurationError."""
    if (
        not isinstance(name, str)
        or _NAME.fullmatch(name) is None
        or SEPARATOR in name
        or name.lower().startswith(RESERVED_PREFIXES)
    ):
        raise ConfigurationError(
            f"invalid namespace {name!r}: it must match ^[A-Za-z][A-Za-z0-9_]{{0,30}}$ "
            f"without {SEPARATOR!r} (it names a schema or prefixes table names)"
        )
    return name


def default_namespace(connector_name: str) -> str:
    """The connector's name made into a namespace (``rest-api`` -> ``rest_api``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", connector_name).strip("_") or "default"
    if not cleaned[0].isalpha():
        cleaned = "ns_" + cleaned
    return validate_namespace(cleaned.replace(SEPARATOR, "_")[:31])


SHARED = ""
"""The namespace name that means the shared, un-prefixed tables of older releases."""


def effective_namespace(connector_name: str, given: str | None) -> str | None:
    """The namespace a new job writes into: ``given``, or by default (``None``) the
    connector's name; :data:`SHARED` (``""``) is the shared tables (``None`` out)."""
    if given is None:
        return default_namespace(connector_name)
    return validate_namespace(given) if given != SHARED else None


def job_namespace(spec: JobSpec) -> str | None:
    value = spec.params.get(PARAM)
    return validate_namespace(value) if isinstance(value, str) and value else None


def namespaced(destination: Destination, name: str | None) -> Destination:
    """``destination`` as seen by a job of namespace ``name`` (itself for ``None``)."""
    if name is None:
        return destination
    validate_namespace(name)
    if isinstance(destination, Namespaced):
        return destination.namespace(name)
    if isinstance(destination, CheckpointingDestination):
        return PrefixedCheckpointingDestination(destination, name)
    return PrefixedDestination(destination, name)


def table_name(entity: str, name: str | None) -> str:
    """The live table ``entity`` lands in, in namespace ``name`` (prefix style)."""
    return entity if name is None else validate_entity(f"{name}{SEPARATOR}{entity}")


class PrefixedDestination:
    """Another destination, with every entity's tables prefixed by the namespace.

    It shares the inner destination's connection: closing it closes nothing.
    """

    def __init__(self, inner: Destination, name: str) -> None:
        self.inner = inner
        self.name = validate_namespace(name)

    def table(self, entity: str) -> str:
        return table_name(entity, self.name)

    async def prepare(self, job_id: str, entity: str, mode: SyncMode) -> None:
        await self.inner.prepare(job_id, self.table(entity), mode)

    async def write_page(
        self,
        job_id: str,
        entity: str,
        mode: SyncMode,
        records: Sequence[Record],
        watermark: datetime | None,
        *,
        fence: int | None = None,
    ) -> None:
        await self.inner.write_page(
            job_id, self.table(entity), mode, records, watermark, fence=fence
        )

    async def finalize(
        self, job_id: str, entity: str, mode: SyncMode, *, fence: int | None = None
    ) -> None:
        await self.inner.finalize(job_id, self.table(entity), mode, fence=fence)

    async def discard(self, job_id: str, entity: str) -> None:
        await self.inner.discard(job_id, self.table(entity))

    async def inspect(self, job_id: str, entity: str) -> StagingCheck:
        return await self.inner.inspect(job_id, self.table(entity))

    async def list_staging(self) -> Sequence[StagedTable]:
        mine = f"{self.name}{SEPARATOR}"
        return [t for t in await self.inner.list_staging() if (t.entity or "").startswith(mine)]

    async def drop_staging(self, staged: StagedTable) -> None:
        await self.inner.drop_staging(staged)

    async def watermark(self, entity: str) -> datetime | None:
        return await self.inner.watermark(self.table(entity))

    async def aclose(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        # The inner destination's read helpers (rows, staged) stay reachable by table.
        return getattr(self.inner, name)


class PrefixedCheckpointingDestination(PrefixedDestination):
    """:class:`PrefixedDestination` over a destination that keeps page checkpoints."""

    inner: CheckpointingDestination

    def __init__(self, inner: CheckpointingDestination, name: str) -> None:
        super().__init__(inner, name)
        self.inner = inner

    async def write_page(
        self,
        job_id: str,
        entity: str,
        mode: SyncMode,
        records: Sequence[Record],
        watermark: datetime | None,
        *,
        fence: int | None = None,
        checkpoint: str | None = None,
    ) -> None:
        await self.inner.write_page(
            job_id, self.table(entity), mode, records, watermark,
            fence=fence, checkpoint=checkpoint,
        )  # fmt: skip

    async def read_checkpoint(self, job_id: str, entity: str) -> str | None:
        return await self.inner.read_checkpoint(job_id, self.table(entity))
