"""The destination plug-in point: where fetched records land.

Implementations: :mod:`statesync.destinations.memory`,
:mod:`statesync.destinations.sqlite` (the embedded default) and
:mod:`statesync.destinations.postgres` (``statesync[postgres]``). Each passes the
``DestinationContract`` suite in ``tests/support/destination_contract.py``.

The contract that makes resume exact:

* :meth:`Destination.write_page` commits a page before it returns; the engine
  checkpoints only afterwards. Records are upserted by id, so a page written twice
  (after a crash between commit and checkpoint) leaves one row per record.
* A full sync writes to a staging area private to its job; :meth:`Destination.finalize`
  swaps it in atomically and is idempotent (a retried swap after a crash is a no-op),
  so readers never see a partial table.
* An incremental sync upserts into the live table. Either mode keeps the job's
  high-water mark beside its pages (same transaction) and publishes it only in
  :meth:`Destination.finalize`: a job abandoned half-way must not move the mark past
  records it never fetched.

A :class:`CheckpointingDestination` also keeps the engine's page checkpoint in each
page's transaction (the source of truth for progress inside a chunk); the state store
is then brought up to date at the chunk's transitions instead of after every page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from attrs import frozen

from statesync._models import Record, SyncMode


@frozen
class StagingCheck:
    """What a destination holds for one job instance's full sync of one entity.

    The engine compares it with the store before each chunk: a recorded swap means the
    entity is complete whatever an older store snapshot says; progress in the store with
    no staging table means the full sync must start over.
    """

    swapped: bool
    """:meth:`Destination.finalize` swapped this job instance's staging data in."""
    staged: bool
    """The job instance's staging table exists."""
    fence: int | None = None
    """The highest lease token a write for this job instance and entity carried."""


@frozen
class StagedTable:
    """A staging table in the destination; ``job``/``entity`` are ``None`` when unrecorded
    (tables staged by a version that kept no registry)."""

    table: str
    job: str | None = None
    entity: str | None = None


@runtime_checkable
class Destination(Protocol):
    async def prepare(self, job_id: str, entity: str, mode: SyncMode) -> None:
        """Make ready to receive pages (create the job's staging table for a full sync).

        Called before every chunk; must be idempotent and keep what earlier chunks of the
        same job wrote.
        """
        ...

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
        """Upsert ``records`` and raise the job's pending watermark; committed on return.

        ``fence`` is the writer's lease token. In the same transaction the destination
        records the highest token seen for ``(job_id, entity)`` and refuses, with
        :class:`~statesync.errors.LeaseError`, a write carrying a lower one: a worker
        whose lease expired mid-write cannot overwrite what its successor wrote.
        """
        ...

    async def finalize(
        self, job_id: str, entity: str, mode: SyncMode, *, fence: int | None = None
    ) -> None:
        """Swap the staging table in (full) and publish the watermark; idempotent.

        ``fence`` is checked as in :meth:`write_page`.
        """
        ...

    async def discard(self, job_id: str, entity: str) -> None:
        """Drop what a cancelled job staged; the live table is untouched."""
        ...

    async def inspect(self, job_id: str, entity: str) -> StagingCheck:
        """What is staged, swapped and fenced for ``job_id``'s full sync of ``entity``."""
        ...

    async def list_staging(self) -> Sequence[StagedTable]:
        """Every staging table present, with the job instance it belongs to when known."""
        ...

    async def drop_staging(self, staged: StagedTable) -> None:
        """Drop one staging table (and its job's pending mark); the live table is untouched."""
        ...

    async def watermark(self, entity: str) -> datetime | None:
        """The high-water mark of the live data, where an incremental sync starts."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CheckpointingDestination(Destination, Protocol):
    """A destination that commits the engine's checkpoint with each page.

    ``checkpoint`` is an opaque text the engine writes and reads back; the destination
    keeps the latest one per ``(job_id, entity)`` in the page's own transaction, so a
    page and the position after it are committed together or not at all. It drops it in
    :meth:`finalize`, :meth:`discard` and :meth:`drop_staging`.
    """

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
        """As :meth:`Destination.write_page`; ``checkpoint``, when given, replaces the
        one kept for ``(job_id, entity)`` in the same transaction."""
        ...

    async def read_checkpoint(self, job_id: str, entity: str) -> str | None:
        """The last checkpoint committed for ``(job_id, entity)``, or ``None``."""
        ...
