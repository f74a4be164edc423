"""``perform_sync_chunk``: the core that decides. Adapters only drive it.

One call runs one chunk of one entity: it moves the machine into ``fetching``, fetches
up to ``max_iterations`` pages, writes each to the destination and checkpoints the
``FetchState`` only after the destination has committed that page, then moves the
machine on (``chunk_done``, ``complete``, ``retry_chunk`` or ``failed``). It never
sleeps: a retryable failure comes back as an outcome with ``retry_in`` set.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from attrs import frozen

from statesync._budget import RateBudget
from statesync._checkpoint import decode, keeper
from statesync._failpoints import crash_point
from statesync._internal import as_internal, bug_details
from statesync._machine import next_state
from statesync._models import (
    EntityRecord,
    ErrorInfo,
    FetchState,
    Lease,
    SyncMode,
    SyncState,
    TransitionRecord,
)
from statesync._pipeline import Pipeline, partitioning_for
from statesync._policy import ChunkPolicy, RetryPolicy
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.errors import ConnectorError
from statesync.events import (
    ChunkFinished,
    ChunkStarted,
    Emitter,
    RateLimitWait,
    RetryScheduled,
    TransitionEvent,
)
from statesync.store import StateStore

_UNCHUNKED = 2**31
_PACE_WEIGHT = 0.7
"""Weight of the last chunk in the seconds-per-call average: latency changes show fast."""


@frozen
class ChunkOutcome:
    """The compact summary of one chunk: safe to return from an Inngest step.

    It carries no records and no secrets, so its size does not grow with the page size.
    """

    job_id: str
    entity: str
    state: SyncState
    fetch_state: FetchState
    chunk_index: int
    """The chunk this call ran (or found already done)."""
    pages: int = 0
    records: int = 0
    attempts: int = 0
    error: ErrorInfo | None = None
    retry_in: float | None = None
    waiting: bool = False
    """The retry waits for the server's rate limit (``Retry-After``, a reset): not a failure."""
    interrupted: bool = False
    already_done: bool = False

    @property
    def is_terminal(self) -> bool:
        """The entity stopped: complete, failed or cancelled (:attr:`SyncState.is_terminal`)."""
        return self.state.is_terminal

    @property
    def finished(self) -> bool:
        """Deprecated (one release): :attr:`is_terminal`."""
        warnings.warn(
            "ChunkOutcome.finished is deprecated: use is_terminal",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.is_terminal


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.define
class _Chunk:
    """One chunk's run: the record as last saved, and where to save it."""

    rec: EntityRecord
    store: StateStore
    lease: Lease | None
    emitter: Emitter
    pages: int = 0
    records: int = 0
    retry_delay: float | None = None
    clock: Callable[[], float] = time.monotonic
    """Seconds of a monotonic clock: what driven time, pace and deadlines are measured by."""
    mark: float = attrs.field(default=attrs.Factory(lambda self: self.clock(), takes_self=True))

    def _driven(self) -> float:
        """The entity's driven time, with this run's time since the last write added."""
        now = self.clock()
        spent, self.mark = now - self.mark, now
        return self.rec.driven_seconds + spent

    waiting: bool = False
    unsaved: bool = False
    """The record holds changes the store does not (their truth is the destination's
    checkpoint, see :mod:`statesync._checkpoint`); the next save or transition writes them."""

    async def save(self, **changes: Any) -> None:
        now = _now()
        new = attrs.evolve(
            self.rec,
            version=self.rec.version + 1,
            updated_at=now,
            driven_seconds=self._driven(),
            **changes,
        )
        await self.store.save(new, lease=self.lease)
        self.rec, self.unsaved = new, False

    def advanced(self, **changes: Any) -> EntityRecord:
        """The record with ``changes``, not yet stored (its version stays the store's)."""
        return attrs.evolve(self.rec, updated_at=_now(), driven_seconds=self._driven(), **changes)

    def landed(self, new: EntityRecord) -> None:
        """``new`` (from :meth:`advanced`) was committed with the destination's checkpoint."""
        self.rec, self.unsaved = new, True

    async def flush(self) -> None:
        """Bring the store up to date with what the destination's checkpoints hold."""
        if self.unsaved:
            await self.save()

    async def fire(
        self,
        trigger: str,
        error: ErrorInfo | None = None,
        *,
        note: str | None = None,
        **changes: Any,
    ) -> None:
        rec, now = self.rec, _now()
        dest = next_state(rec.entity, rec.state, trigger)
        new = attrs.evolve(
            rec,
            state=dest,
            version=rec.version + 1,
            updated_at=now,
            state_since=now if dest != rec.state else rec.state_since,
            driven_seconds=self._driven(),
            **changes,
        )
        transition = TransitionRecord(
            trigger, rec.state, dest, now, new.chunk_index, error, note=note
        )
        crash_point("before_transition")
        await self.store.save(new, transition=transition, lease=self.lease)
        crash_point("after_transition")
        self.rec, self.unsaved = new, False
        if self.emitter:
            self.emitter.emit(
                TransitionEvent(
                    rec.job_id, rec.entity, trigger, rec.state, dest, new.chunk_index, error
                )
            )

    def outcome(self, chunk_index: int, **kw: Any) -> ChunkOutcome:
        rec = self.rec
        return ChunkOutcome(
            job_id=rec.job_id,
            entity=rec.entity,
            state=rec.state,
            fetch_state=rec.fetch_state,
            chunk_index=chunk_index,
            pages=self.pages,
            records=self.records,
            attempts=rec.attempts,
            error=rec.last_error,
            **kw,
        )


async def perform_sync_chunk(
    *,
    job_id: str,
    entity: str,
    connector: BaseConnector,
    store: StateStore,
    destination: Destination,
    chunk_policy: ChunkPolicy | None = None,
    retry_policy: RetryPolicy | None = None,
    lease: Lease | None = None,
    expected_chunk: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    emitter: Emitter | None = None,
    budget: RateBudget | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ChunkOutcome:
    """Run one chunk of ``entity`` in ``job_id`` and return where it stands.

    ``expected_chunk`` makes the call idempotent for executors that may run a step
    twice: when the store shows that chunk already finished, nothing is fetched and the
    summary of the finished chunk is returned. ``should_stop`` is checked after each
    page's checkpoint, so an interrupted chunk resumes exactly after its last page.
    ``budget`` paces the requests (one budget per API account, shared by every entity
    and window that calls it: see :class:`statesync.BudgetRegistry`). ``clock`` (monotonic
    seconds) times the chunk: its target duration and the measured pace that sizes the next.
    """
    policy = chunk_policy or ChunkPolicy()
    run = _Chunk(
        await store.get_entity(job_id, entity), store, lease, emitter or Emitter(), clock=clock
    )
    rec = run.rec
    if expected_chunk is not None and rec.chunk_index > expected_chunk:
        return run.outcome(expected_chunk, already_done=True)
    if rec.state in (SyncState.COMPLETE, SyncState.FAILED, SyncState.CANCELLED):
        return run.outcome(rec.chunk_index, already_done=True)
    if await _reconcile(run, destination):
        return run.outcome(rec.chunk_index)
    await _adopt_checkpoint(run, connector, destination)
    index = run.rec.chunk_index
    await _enter_fetching(run, connector)
    run.emitter.emit(ChunkStarted(job_id, entity, index))
    started = clock()
    target = policy.target_duration if connector.supports_resumable_fetching() else None
    pipeline = Pipeline(
        run=run,
        connector=connector,
        destination=destination,
        policy=policy,
        budget=budget,
        limit=_chunk_limit(run.rec, connector, policy),
        deadline=None if target is None else started + target,
        should_stop=should_stop,
        clock=clock,
    )
    try:
        if await _fetch_pages(run, pipeline, connector):
            await run.flush()
            return run.outcome(index, interrupted=True)
        await _close_chunk(run, destination, _pace(run, started))
    except ConnectorError as exc:
        await _record_failure(run, exc, retry_policy or RetryPolicy())
    except Exception as exc:  # noqa: BLE001 - a bug fails its entity (typed), not the run
        await _record_failure(run, as_internal(exc), retry_policy or RetryPolicy())
    out = run.outcome(index, retry_in=run.retry_delay, waiting=run.waiting)
    run.emitter.emit(
        ChunkFinished(
            job_id, entity, index, run.pages, run.records, clock() - started, run.rec.state
        )
    )
    return out


_SWAPPED_NOTE = (
    "reconciled: the destination already swapped in this job instance's data, so the "
    "store (restored from an earlier snapshot?) was behind; the entity is complete"
)
_RESTART_NOTE = (
    "reconciled: the store recorded progress but the destination has no staging data for "
    "this job instance (dropped, or restored from an earlier snapshot?); the full sync "
    "starts over"
)
_TO_FETCHING = {SyncState.PENDING: "start", SyncState.CHUNK_DONE: "next_chunk"}


async def _reconcile(run: _Chunk, destination: Destination) -> bool:
    """Bring the store in line with the destination; True when the entity is now complete.

    Only full syncs can disagree: an incremental sync upserts into the live table, so
    replaying pages from an older checkpoint is harmless.
    """
    rec = run.rec
    if rec.mode is not SyncMode.FULL:
        return False
    check = await destination.inspect(rec.destination_job, rec.entity)
    if check.swapped:
        await _fire_to_fetching(run, _SWAPPED_NOTE)
        done = attrs.evolve(run.rec.fetch_state, has_more=False)
        index = run.rec.chunk_index + 1
        await run.fire("complete", note=_SWAPPED_NOTE, fetch_state=done, chunk_index=index)
        return True
    if not check.staged and _has_progress(rec.fetch_state):
        trigger = _TO_FETCHING.get(rec.state, "retry_chunk")
        await run.fire(trigger, note=_RESTART_NOTE, fetch_state=FetchState(), attempts=0)
    return False


async def _adopt_checkpoint(
    run: _Chunk, connector: BaseConnector, destination: Destination
) -> None:
    """Take the position the destination committed after the store's last save, if any
    (the process stopped mid-chunk): its pages are written, so they are not fetched again."""
    rec = run.rec
    keeps = keeper(connector, destination) if rec.state is SyncState.FETCHING else None
    if keeps is None:
        return
    raw = await keeps.read_checkpoint(rec.destination_job, rec.entity)
    found = decode(raw, rec)
    if found is not None and found.fetch_state != rec.fetch_state:
        await run.save(**found.changes())


async def _fire_to_fetching(run: _Chunk, note: str) -> None:
    trigger = _TO_FETCHING.get(run.rec.state)
    if trigger is not None:
        await run.fire(trigger, note=note)


def _has_progress(state: FetchState) -> bool:
    """Whether the checkpoint says pages were already written to staging."""
    return state.total_processed > 0 or any(p.records or p.done for p in state.partitions)


async def _enter_fetching(run: _Chunk, connector: BaseConnector) -> None:
    rec = run.rec
    fresh = rec.fetch_state.new_chunk()
    if not connector.supports_resumable_fetching():
        # The seed's fallback: no checkpoint can be trusted, so every run starts over;
        # upserts by id make the repeated pages harmless.
        fresh = FetchState()
    if rec.state is SyncState.PENDING:
        await run.fire("start", fetch_state=fresh)
    elif rec.state is SyncState.CHUNK_DONE:
        await run.fire("next_chunk", fetch_state=fresh)
    elif fresh != rec.fetch_state and not connector.supports_resumable_fetching():
        await run.save(fetch_state=fresh)


async def _fetch_pages(run: _Chunk, pipeline: Pipeline, connector: BaseConnector) -> bool:
    """Fetch and land this chunk's pages; True when a stop request cut the chunk short.

    Pages are written and checkpointed strictly one after another (see
    :mod:`statesync._pipeline` for what is in flight meanwhile). A fetched page that never
    lands (a stop, a crash, a failed write) is simply fetched again from the checkpoint.
    """
    rec = run.rec
    await pipeline.destination.prepare(rec.destination_job, rec.entity, rec.mode)
    partitioning = partitioning_for(connector, rec.fetch_state, rec.entity, pipeline.policy)
    if partitioning is not None:
        return await pipeline.partitions(partitioning)
    return await pipeline.stream()


def _chunk_limit(rec: EntityRecord, connector: BaseConnector, policy: ChunkPolicy) -> int:
    if not connector.supports_resumable_fetching():
        return _UNCHUNKED
    return policy.iterations(rec.seconds_per_call)


def _pace(run: _Chunk, started: float) -> float | None:
    """The moving average of seconds per API call, with this chunk's measurement in."""
    before = run.rec.seconds_per_call
    if run.pages == 0:
        return before
    measured = (run.clock() - started) / run.pages
    return measured if before is None else before + _PACE_WEIGHT * (measured - before)


async def _close_chunk(run: _Chunk, destination: Destination, pace: float | None) -> None:
    rec = run.rec
    if rec.fetch_state.has_more:
        # A chunk that landed ends its retries: the error is history now, not current.
        await run.fire(
            "chunk_finished",
            chunk_index=rec.chunk_index + 1,
            attempts=0,
            seconds_per_call=pace,
            last_error=None,
        )
        return
    # Crash-safe: finalize is idempotent, and a crash before "complete" lands here again.
    fence = run.lease.token if run.lease is not None else None
    await destination.finalize(rec.destination_job, rec.entity, rec.mode, fence=fence)
    crash_point("after_finalize")
    await run.fire(
        "complete",
        chunk_index=rec.chunk_index + 1,
        attempts=0,
        seconds_per_call=pace,
        last_error=None,
    )


async def _record_failure(run: _Chunk, exc: ConnectorError, retry: RetryPolicy) -> None:
    rec = run.rec
    exc = exc.with_context(rec.entity, None)
    now = _now()
    attempt = rec.attempts + 1
    # Attempts count failures since the last landed page; so does the time waited.
    last = rec.last_error
    first = (last.first_at or last.at) if rec.attempts and last is not None else now
    decision = retry.decide(attempt, exc, elapsed=(now - first).total_seconds())
    message = str(exc)
    if decision.delay is None and decision.reason is not None:
        message = f"{message}; {decision.reason}"
        if exc.retry_after is not None and decision.reason.startswith("the server asked"):
            resume = now + timedelta(seconds=exc.retry_after)
            message = f"{message}; resume it after {resume.isoformat(timespec='seconds')}"
    error = ErrorInfo(exc.kind, message, now, exc.retry_after, first_at=first, **bug_details(exc))
    if decision.delay is None:
        await run.fire("fail", error, attempts=attempt, last_error=error)
        return
    await run.fire("retry_chunk", error, attempts=attempt, last_error=error)
    if decision.waiting:
        run.emitter.emit(RateLimitWait(rec.job_id, rec.entity, decision.delay))
    else:
        event = RetryScheduled(
            rec.job_id, rec.entity, rec.chunk_index, attempt, decision.delay, error
        )
        run.emitter.emit(event)
    run.retry_delay = decision.delay
    run.waiting = decision.waiting


async def apply_trigger(
    store: StateStore,
    job_id: str,
    entity: str,
    trigger: str,
    *,
    lease: Lease | None = None,
    emitter: Emitter | None = None,
    **changes: Any,
) -> EntityRecord:
    """Fire an operator's trigger (``resume``, ``cancel``) on an entity and persist it.

    Raises :class:`~statesync.errors.InvalidTransitionError` when the entity's state has
    no such transition.
    """
    run = _Chunk(await store.get_entity(job_id, entity), store, lease, emitter or Emitter())
    await run.fire(trigger, **changes)
    return run.rec
