"""Frozen value objects shared by the engine, the stores and the adapters."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
from attrs import field, frozen

JSON = Any
"""A JSON-compatible value (what a record field or connector metadata may hold)."""


class SyncMode(enum.StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class SyncState(enum.StrEnum):
    """States of the entity-sync machine (the table lives in ``_machine``)."""

    PENDING = "pending"
    FETCHING = "fetching"
    CHUNK_DONE = "chunk_done"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (SyncState.COMPLETE, SyncState.CANCELLED)


def _frozen_mapping(value: Mapping[str, JSON] | None) -> Mapping[str, JSON]:
    return dict(value or {})


@frozen
class FetchState:
    """Where an entity's fetch stands: enough to resume it in any process.

    ``offset`` serves offset pagination, ``cursor`` cursor pagination; ``metadata``
    holds what a connector needs beyond them (a date window, say). It must stay
    JSON-compatible, because it is checkpointed as is.
    """

    offset: int | None = None
    cursor: str | None = None
    total_processed: int = 0
    has_more: bool = True
    iterations_in_chunk: int = 0
    metadata: Mapping[str, JSON] = field(factory=dict, converter=_frozen_mapping)

    def advance(self, page: Page) -> FetchState:
        """The state after ``page`` has been written."""
        return FetchState(
            offset=page.next_offset,
            cursor=page.next_cursor,
            total_processed=self.total_processed + len(page.records),
            has_more=page.has_more,
            iterations_in_chunk=self.iterations_in_chunk + 1,
            metadata=page.metadata if page.metadata is not None else self.metadata,
        )

    def new_chunk(self) -> FetchState:
        return attrs.evolve(self, iterations_in_chunk=0)


@frozen
class ResumableFetchOptions:
    """What to fetch in one chunk (the seed's ``ResumableFetchOptions``)."""

    entity: str
    max_iterations: int = 10
    state: FetchState | None = None
    page_size: int = 100
    since: datetime | None = None
    mode: SyncMode = SyncMode.FULL

    def __attrs_post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {self.page_size}")


@frozen
class PageRequest:
    """One page to fetch: the token in. Connectors answer it with a :class:`Page`."""

    entity: str
    state: FetchState
    page_size: int
    since: datetime | None
    mode: SyncMode


@frozen
class Record:
    """One source record: its key, timestamps and the raw JSON object."""

    id: str
    data: Mapping[str, JSON]
    updated_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def watermark(self) -> datetime | None:
        return self.updated_at or self.created_at


@frozen
class Page:
    """One answered page: the records and the token out."""

    records: tuple[Record, ...]
    has_more: bool
    next_offset: int | None = None
    next_cursor: str | None = None
    metadata: Mapping[str, JSON] | None = None
    total: int | None = None
    """Records the API says the whole entity has, when it says so (for progress)."""

    def max_watermark(self) -> datetime | None:
        marks = [m for m in (r.watermark for r in self.records) if m is not None]
        return max(marks) if marks else None


@frozen
class ErrorInfo:
    """A recorded failure, safe to persist and show (never holds secrets)."""

    kind: str
    message: str
    at: datetime
    retry_after: float | None = None


@frozen
class EntityRecord:
    """The persisted record of one entity's sync within a job.

    The machine's state lives here (``state``), next to the ``FetchState`` checkpoint;
    ``version`` increases with every write so stale writers are refused.
    """

    job_id: str
    entity: str
    mode: SyncMode
    state: SyncState = SyncState.PENDING
    fetch_state: FetchState = field(factory=FetchState)
    version: int = 0
    chunk_index: int = 0
    attempts: int = 0
    api_calls: int = 0
    since: datetime | None = None
    watermark: datetime | None = None
    total_hint: int | None = None
    last_error: ErrorInfo | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    state_since: datetime | None = None

    @property
    def records(self) -> int:
        return self.fetch_state.total_processed


@frozen
class TransitionRecord:
    """One line of an entity's transition history."""

    trigger: str
    source: SyncState
    dest: SyncState
    at: datetime
    chunk_index: int
    error: ErrorInfo | None = None


@frozen
class JobSpec:
    """A sync job: which connector, which entities, how. Holds no secrets."""

    job_id: str
    connector: str
    entities: tuple[str, ...]
    mode: SyncMode = SyncMode.FULL
    params: Mapping[str, JSON] = field(factory=dict, converter=_frozen_mapping)
    created_at: datetime | None = None


@frozen
class Lease:
    """The right to drive one entity, proven by a fencing token."""

    job_id: str
    entity: str
    owner: str
    token: int
    expires_at: float
