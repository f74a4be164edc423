"""Frozen value objects shared by the engine, the stores and the adapters."""

from __future__ import annotations

import enum
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs
from attrs import field, frozen

from statesync._frozen import EMPTY, frozen_mapping
from statesync.errors import ErrorKind

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
    def is_terminal(self) -> bool:
        """The machine stops here: ``complete``, ``failed`` or ``cancelled`` (a failed
        entity waits for an operator's ``resume``). :attr:`ChunkOutcome.is_terminal`."""
        return self in (SyncState.COMPLETE, SyncState.FAILED, SyncState.CANCELLED)

    @property
    def is_done(self) -> bool:
        """No transition leaves it: ``complete`` or ``cancelled`` (not ``failed``, which
        may be resumed)."""
        return self in (SyncState.COMPLETE, SyncState.CANCELLED)

    @property
    def is_final(self) -> bool:
        """Deprecated (one release): :attr:`is_done`, which it always meant."""
        warnings.warn(
            "SyncState.is_final is deprecated: use is_done (complete or cancelled) or "
            "is_terminal (complete, failed or cancelled)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.is_done


def _frozen_optional(value: Mapping[str, JSON] | None) -> Mapping[str, JSON] | None:
    return None if value is None else frozen_mapping(value)


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
    metadata: Mapping[str, JSON] = field(default=EMPTY, converter=frozen_mapping)

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
    JSON-compatible, because it is checkpointed as is; it is stored deeply frozen (an
    immutable mapping, lists as tuples), so a state is hashable and cannot change.
    """

    offset: int | None = None
    """Offset pagination's position: the absolute index (0-based) in the connector's
    query of the next record to fetch, i.e. how many records of that query the walk has
    passed; ``None`` before the first page or for walks that do not use offsets. It is
    the ``Page.next_offset`` of the last page written, copied as is."""
    cursor: str | None = None
    """Cursor pagination's position: the opaque token (or next-page URL) the last page
    handed back (``Page.next_cursor``); ``None`` means "from the start". Exclusive: it
    names where the next page starts, never a record to fetch again."""
    total_processed: int = 0
    """Records handed out so far by this entity's fetch, over every chunk (not only
    this one). Connectors may read it (progress totals); the engine only adds to it."""
    has_more: bool = True
    """``False`` once a page said the entity is exhausted: the fetch is complete."""
    iterations_in_chunk: int = 0
    """Pages fetched in the current chunk (reset to 0 by :meth:`new_chunk`); the chunk
    ends when it reaches ``ResumableFetchOptions.max_iterations``."""
    metadata: Mapping[str, JSON] = field(default=EMPTY, converter=frozen_mapping)
    """The connector's own position beyond offset and cursor (a date window, the ids
    already handed out at the last timestamp, a page number...), JSON-compatible and
    checkpointed as is; it is part of the position (:meth:`position`)."""
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
    """The entity to fetch, as the job names it."""
    max_iterations: int = 10
    """Pages (API calls) at most in this chunk; at least 1."""
    state: FetchState | None = None
    """Where to resume; ``None`` starts afresh (``BaseConnector.initial_state``)."""
    page_size: int = 100
    """Records asked for per page; connectors clamp it to their API's maximum."""
    since: datetime | None = None
    """Incremental syncs only: the watermark of the last complete sync (the destination's
    highest ``Record.watermark``, capped at that job's start less a margin). Inclusive:
    records changed *at or after* it must be fetched; re-fetching a record is harmless
    (destinations upsert by id), missing one is not. Naive values mean UTC."""
    mode: SyncMode = SyncMode.FULL
    """``full`` fetches everything; ``incremental`` fetches changes since ``since``."""

    def __attrs_post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {self.page_size}")


@frozen
class PageRequest:
    """One page to fetch: the token in. Connectors answer it with a :class:`Page`."""

    entity: str
    """The entity to fetch a page of."""
    state: FetchState
    """The position to fetch from (the token in): offset, cursor and metadata."""
    page_size: int
    """Records to ask for; the connector may clamp it to its API's maximum, and a page
    shorter than asked does not by itself mean the end (``Page.has_more`` says)."""
    since: datetime | None
    """The incremental lower bound, inclusive (see ``ResumableFetchOptions.since``);
    ``None`` in full syncs."""
    mode: SyncMode
    """Full or incremental (an incremental request with ``since=None`` fetches all)."""
    window: TimeWindow | None = None
    """The creation-time window to restrict the request to (partitioned entities)."""


@frozen
class Record:
    """One source record: its key, timestamps and the raw JSON object."""

    id: str
    """The record's key in the destination (upserts and deletes are by id)."""
    data: Mapping[str, JSON]
    """The record as the API returned it (JSON-compatible), stored as is."""
    updated_at: datetime | None = None
    """When the record last changed (timezone-aware, UTC if naive). It drives the
    watermark: set it only to the time incremental syncs filter on, since the next
    incremental sync starts from the highest one written."""
    created_at: datetime | None = None
    """When the record was created: the watermark when ``updated_at`` is unset, and what
    the engine splits creation-time windows by (required for partitioned entities)."""

    @property
    def watermark(self) -> datetime | None:
        """``updated_at``, else ``created_at``: what the destination's watermark (the next
        incremental ``since``) is computed from."""
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
    """The records to write, in any order; records handed out before (an anchored
    re-read) must be left out, so each record of a walk is handed out once."""
    has_more: bool
    """Whether another page follows. ``False`` ends the fetch (the entity completes), so
    set it false only when the API said so: a has-more flag, no next token, a total
    reached, or an empty or short page for APIs whose pages are full until the end. A
    page with no records may still say ``True`` (the position moved, e.g. re-opened)."""
    next_offset: int | None = None
    """The absolute offset of the next page in the connector's query (not relative to
    this page); becomes ``FetchState.offset``. ``None`` for cursor walks."""
    next_cursor: str | None = None
    """The token for the next page (exclusive: it points after this page's last record);
    becomes ``FetchState.cursor``. ``None`` for offset walks or at the end."""
    metadata: Mapping[str, JSON] | None = field(default=None, converter=_frozen_optional)
    """The connector's next position beyond offset/cursor; ``None`` keeps the previous
    ``FetchState.metadata``, a mapping (even empty) replaces it."""
    total: int | None = None
    """Records the API says the whole entity has, when it says so (for progress only:
    never used to decide the end; absolute, not what remains)."""
    rate: RateInfo | None = None
    """What the API said about the account's rate limit with this answer, if anything."""
    request: str | None = None
    """The request that was answered, as errors show it (method, path and the filters
    sent, never a secret): the engine names it when a walk makes no progress."""

    def max_watermark(self) -> datetime | None:
        marks = [m for m in (r.watermark for r in self.records) if m is not None]
        return max(marks) if marks else None


def _error_kind(value: str) -> ErrorKind:
    return ErrorKind(value)


@frozen
class ErrorInfo:
    """A recorded failure, safe to persist and show (never holds secrets)."""

    kind: ErrorKind = field(converter=_error_kind)
    """Why it failed; a string naming a kind is accepted (``"rate_limited"``)."""
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
    params: Mapping[str, JSON] = field(default=EMPTY, converter=frozen_mapping)
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
