"""An in-memory destination: the SQLite destination's semantics, kept in dicts.

For tests and embedding. Records go through a JSON round trip, so what a test reads
back is what a SQL destination would return (and non-JSON data fails the same way).
Entity names are validated like the SQL destinations', so the contract suite can hold
every destination to one rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from statesync._models import Record, SyncMode
from statesync.destination import StagedTable, StagingCheck
from statesync.destinations._names import (
    check_staging,
    job_key,
    staging_table,
    validate_entity,
)
from statesync.errors import DestinationError, StaleFenceError

_Key = tuple[str, str]
"""(job key, entity)."""
_Table = dict[str, dict[str, Any]]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _copy(records: Sequence[Record]) -> _Table:
    try:
        return {r.id: json.loads(json.dumps(r.data)) for r in records}
    except (TypeError, ValueError) as exc:
        raise DestinationError(f"a record is not JSON-serialisable: {exc}") from exc


class MemoryDestination:
    """Keeps live tables, staging tables and watermarks in dicts; nothing persists."""

    def __init__(self) -> None:
        self._live: dict[str, _Table] = {}
        self._staging: dict[_Key, _Table] = {}
        self._pending: dict[_Key, datetime] = {}
        self._published: dict[str, datetime] = {}
        self._swaps: set[_Key] = set()
        self._fences: dict[_Key, int] = {}
        self._jobs: dict[_Key, str] = {}
        """The job id behind each staging key (for listing staging tables)."""
        self._checkpoints: dict[_Key, str] = {}

    # No method awaits, so each runs atomically on the event loop: no lock is needed.

    async def prepare(self, job_id: str, entity: str, mode: SyncMode) -> None:
        key = (job_key(job_id), validate_entity(entity))
        if mode is SyncMode.INCREMENTAL:
            self._live.setdefault(entity, {})
        elif key not in self._swaps:
            self._staging.setdefault(key, {})
            self._jobs[key] = job_id

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
        key = (job_key(job_id), validate_entity(entity))
        self._check_fence(key, fence)
        target = self._live.get(entity) if mode is SyncMode.INCREMENTAL else self._staging.get(key)
        if target is None:
            raise DestinationError(f"entity {entity!r} was not prepared for job {job_id!r}")
        target.update(_copy(records))
        if watermark is not None:
            mark = _aware(watermark)
            self._pending[key] = max(mark, self._pending.get(key, mark))
        if checkpoint is not None:
            self._checkpoints[key] = checkpoint

    async def read_checkpoint(self, job_id: str, entity: str) -> str | None:
        return self._checkpoints.get((job_key(job_id), validate_entity(entity)))

    async def finalize(
        self, job_id: str, entity: str, mode: SyncMode, *, fence: int | None = None
    ) -> None:
        key = (job_key(job_id), validate_entity(entity))
        self._check_fence(key, fence)
        self._checkpoints.pop(key, None)
        if mode is SyncMode.INCREMENTAL:
            mark = self._pending.pop(key, None)
            if mark is not None:
                self._published[entity] = max(mark, self._published.get(entity, mark))
            return
        if key in self._swaps:
            return
        if key not in self._staging:
            raise DestinationError(
                f"cannot finalize entity {entity!r}: its staging table is gone and no swap "
                "was recorded (was the job discarded, or never prepared?)"
            )
        self._live[entity] = self._staging.pop(key)
        self._published.pop(entity, None)
        if key in self._pending:
            self._published[entity] = self._pending.pop(key)
        self._swaps.add(key)

    def _check_fence(self, key: _Key, fence: int | None) -> None:
        if fence is None:
            return
        if fence < self._fences.get(key, fence):
            raise StaleFenceError(key[1], fence)
        self._fences[key] = fence

    async def discard(self, job_id: str, entity: str) -> None:
        key = (job_key(job_id), validate_entity(entity))
        self._staging.pop(key, None)
        self._pending.pop(key, None)
        self._checkpoints.pop(key, None)

    async def inspect(self, job_id: str, entity: str) -> StagingCheck:
        key = (job_key(job_id), validate_entity(entity))
        return StagingCheck(key in self._swaps, key in self._staging, self._fences.get(key))

    async def list_staging(self) -> list[StagedTable]:
        return [StagedTable(self._table(k), self._jobs[k], k[1]) for k in self._staging]

    async def drop_staging(self, staged: StagedTable) -> None:
        check_staging(staged.table)
        for key in [k for k in self._staging if staged.table == self._table(k)]:
            del self._staging[key]
            self._pending.pop(key, None)
            self._checkpoints.pop(key, None)

    def _table(self, key: _Key) -> str:
        return staging_table(key[1], self._jobs[key])

    async def watermark(self, entity: str) -> datetime | None:
        return self._published.get(validate_entity(entity))

    async def aclose(self) -> None:
        return None

    # -- read helpers for tests ----------------------------------------------

    def rows(self, entity: str) -> dict[str, dict[str, Any]]:
        """The live table of ``entity`` as ``{id: record data}`` (a copy)."""
        return dict(self._live.get(validate_entity(entity), {}))

    def staged(self, job_id: str, entity: str) -> dict[str, dict[str, Any]]:
        """What ``job_id`` has staged for a full sync of ``entity`` (a copy)."""
        return dict(self._staging.get((job_key(job_id), validate_entity(entity)), {}))
