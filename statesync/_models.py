"""Frozen value objects shared by the engine, the stores and the adapters."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs
from attrs import field, frozen

WATERMARK_MARGIN = timedelta(minutes=5)
"""How far before a job's start its published high-water mark may reach at most."""

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
class TimeWindow:
    """A creation-time range in Unix seconds: ``lower`` inclusive, ``upper`` exclusive.

    ``None`` leaves that side open. A connector that offers partitions (see
    :meth:`BaseConnector.partitioning`) restricts a request to its window.
    """

    lower: int | None = None
    upper: int | None = None


@frozen
class Partition:
    """One time window of a partitioned entity, walked with its own cursor.

    The entity's checkpoint is the set of its partitions: each one's cursor moves only
    after a page of that window has committed, independently of the others.
    """

    lower: int | None = None
    upper: int | None = None
    cursor: str | None = None
    offset: int | None = None
    records: int = 0
    done: bool = False
    metadata: Mapping[str, JSON] = field(factory=dict, converter=_frozen_mapping)

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(self.lower, self.upper)

    def state(self) -> FetchState:
        """The fetch state a connector sees for this window."""
        return FetchState(
            offset=self.offset,
            cursor=self.cursor,
            total_processed=self.records,
            has_more=not self.done,
            metadata=self.metadata,
        )


def _partition_tuple(value: Iterable[Partition]) -> tuple[Partition, ...]:
    return tuple(value)


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
    partitions: tuple[Partition, ...] = field(default=(), converter=_partition_tuple)
    """Set when the entity is walked as concurrent time windows (then ``cursor`` and
    ``offset`` are unused and ``has_more`` says whether any window is unfinished)."""

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

    def position(self) -> tuple[int | None, str | None, Mapping[str, JSON]]:
        """What a connector's next request depends on: offset, cursor and metadata."""
        return (self.offset, self.cursor, self.metadata)

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
    window: TimeWindow | None = None
    """The creation-time window to restrict the request to (partitioned entities)."""


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
class RateInfo:
    """A provider's report on the account's request budget (e.g. a ``RateLimit`` header).

    ``reset`` is seconds until ``remaining`` is refilled to ``limit``.
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None


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
    rate: RateInfo | None = None
    """What the API said about the account's rate limit with this answer, if anything."""
    request: str | None = None
    """The request that was answered, as errors show it (method, path and the filters
    sent, never a secret): the engine names it when a walk makes no progress."""

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
    exception: str | None = None
    """For kind ``internal``: the exception's type name (a connector's bug)."""
    frame: str | None = None
    """For kind ``internal``: the traceback's last frame, ``file:line in function``."""
    first_at: datetime | None = None
    """When the failures without progress that this one continues began (``at`` for
    the first): a server-timed rate limit is given up by this time, not by a count."""


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
    seconds_per_call: float | None = None
    """Measured wall time of a chunk divided by its API calls (a moving average), which
    sizes the next chunk when the chunk policy sets a ``target_duration``."""
    driven_seconds: float = 0.0
    """Wall time workers spent driving this entity (up to its last write): the rate's
    denominator, so time nobody drove it (a dead worker, a stopped job) is left out."""

    @property
    def records(self) -> int:
        return self.fetch_state.total_processed

    @property
    def destination_job(self) -> str:
        """The job as destinations key it: one id per job *instance*.

        A job id can be reused once the old job expired from the store; its staging
        tables and swap markers must not be mistaken for the new job's.
        """
        if self.created_at is None:
            return self.job_id
        return f"{self.job_id}@{self.created_at.isoformat()}"

    def cap_watermark(self, mark: datetime | None) -> datetime | None:
        """``mark``, never later than this job's start less :data:`WATERMARK_MARGIN`.

        A source not ordered by update time can hand out a record updated after the job
        started before one updated earlier but fetched later; publishing the later time
        would make the next incremental sync skip the earlier edit. Capping at the job's
        start (less a margin for clock skew) costs a few re-fetched records instead.
        """
        if mark is None or self.created_at is None:
            return mark
        return min(mark, self.created_at - WATERMARK_MARGIN)


@frozen
class TransitionRecord:
    """One line of an entity's transition history."""

    trigger: str
    source: SyncState
    dest: SyncState
    at: datetime
    chunk_index: int
    error: ErrorInfo | None = None
    note: str | None = None
    """Why the engine fired it when that is not the usual course (reconciliation)."""


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
    """The right to drive one entity, proven by a fencing token.

    ``host`` and ``pid`` name the holder's process when it said (the local runner does),
    so a worker on the same host can tell a dead holder from a live one.
    """

    job_id: str
    entity: str
    owner: str
    token: int
    expires_at: float
    host: str | None = None
    pid: int | None = None

    def holder(self) -> str:
        """Who holds it, for messages: ``owner (pid N on host)`` when known."""
        if self.pid is None:
            return self.owner
        return f"{self.owner} (pid {self.pid} on {self.host or 'an unknown host'})"
