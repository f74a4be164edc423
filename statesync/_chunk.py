"""``perform_sync_chunk``: the core that decides. Adapters only drive it.

One call runs one chunk of one entity: it moves the machine into ``fetching``, fetches
up to ``max_iterations`` pages, writes each to the destination and checkpoints the
``FetchState`` only after the destination has committed that page, then moves the
machine on (``chunk_done``, ``complete``, ``retry_chunk`` or ``failed``). It never
sleeps: a retryable failure comes back as an outcome with ``retry_in`` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
from attrs import frozen

from statesync._failpoints import crash_point
from statesync._machine import next_state
from statesync._models import (
    EntityRecord,
    ErrorInfo,
    FetchState,
    Lease,
    Page,
    PageRequest,
    SyncState,
    TransitionRecord,
)
from statesync._policy import ChunkPolicy, RetryPolicy
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.errors import ConnectorError
from statesync.events import (
    ChunkFinished,
    ChunkStarted,
    Emitter,
    PageWritten,
    RetryScheduled,
    TransitionEvent,
)
from statesync.store import StateStore

_UNCHUNKED = 2**31


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
    interrupted: bool = False
    already_done: bool = False

    @property
    def finished(self) -> bool:
        return self.state in (SyncState.COMPLETE, SyncState.FAILED, SyncState.CANCELLED)


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

    async def save(self, **changes: Any) -> None:
        now = _now()
        new = attrs.evolve(self.rec, version=self.rec.version + 1, updated_at=now, **changes)
        await self.store.save(new, lease=self.lease)
        self.rec = new

    async def fire(self, trigger: str, error: ErrorInfo | None = None, **changes: Any) -> None:
        rec, now = self.rec, _now()
        dest = next_state(rec.entity, rec.state, trigger)
        new = attrs.evolve(
            rec,
            state=dest,
            version=rec.version + 1,
            updated_at=now,
            state_since=now if dest != rec.state else rec.state_since,
            **changes,
        )
        transition = TransitionRecord(trigger, rec.state, dest, now, new.chunk_index, error)
        crash_point("before_transition")
        await self.store.save(new, transition=transition, lease=self.lease)
        crash_point("after_transition")
        self.rec = new
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
) -> ChunkOutcome:
    """Run one chunk of ``entity`` in ``job_id`` and return where it stands.

    ``expected_chunk`` makes the call idempotent for executors that may run a step
    twice: when the store shows that chunk already finished, nothing is fetched and the
    summary of the finished chunk is returned. ``should_stop`` is checked after each
    page's checkpoint, so an interrupted chunk resumes exactly after its last page.
    """
    policy = chunk_policy or ChunkPolicy()
    run = _Chunk(await store.get_entity(job_id, entity), store, lease, emitter or Emitter())
    rec = run.rec
    if expected_chunk is not None and rec.chunk_index > expected_chunk:
        return run.outcome(expected_chunk, already_done=True)
    if rec.state in (SyncState.COMPLETE, SyncState.FAILED, SyncState.CANCELLED):
        return run.outcome(rec.chunk_index, already_done=True)
    index = rec.chunk_index
    await _enter_fetching(run, connector)
    run.emitter.emit(ChunkStarted(job_id, entity, index))
    started = time.monotonic()
    try:
        await _fetch_pages(run, connector, destination, policy, should_stop)
        if _wants_page(run.rec.fetch_state, connector, policy):
            return run.outcome(index, interrupted=True)
        await _close_chunk(run, destination)
    except ConnectorError as exc:
        await _record_failure(run, exc, retry_policy or RetryPolicy())
    out = run.outcome(index, retry_in=run.retry_delay)
    run.emitter.emit(
        ChunkFinished(
            job_id, entity, index, run.pages, run.records, time.monotonic() - started, run.rec.state
        )
    )
    return out


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


async def _fetch_pages(
    run: _Chunk,
    connector: BaseConnector,
    destination: Destination,
    policy: ChunkPolicy,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Fetch and land pages in order, with the next page in flight while one is written.

    Pages are written and checkpointed strictly one after another; only the fetch of
    page k+1 overlaps the write of page k. A prefetched page that never lands (a stop,
    a crash, a failed write) is simply fetched again from the checkpoint.
    """
    rec = run.rec
    await destination.prepare(rec.job_id, rec.entity, rec.mode)
    if not _wants_page(run.rec.fetch_state, connector, policy):
        return
    pending: asyncio.Task[Page] | None = _start_fetch(
        connector, run.rec, run.rec.fetch_state, policy
    )
    try:
        while pending is not None:
            page = await pending
            crash_point("after_fetch")
            after = run.rec.fetch_state.advance(page)
            stopping = should_stop is not None and should_stop()
            pending = None
            if not stopping and _wants_page(after, connector, policy):
                pending = _start_fetch(connector, run.rec, after, policy)
                # Let the prefetch send its request before a destination that writes
                # synchronously holds the loop.
                await asyncio.sleep(0)
            await _land_page(run, destination, page)
            if should_stop is not None and should_stop():
                return
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectorError):
                await pending


def _wants_page(state: FetchState, connector: BaseConnector, policy: ChunkPolicy) -> bool:
    limit = policy.max_iterations if connector.supports_resumable_fetching() else _UNCHUNKED
    return state.has_more and state.iterations_in_chunk < limit


def _start_fetch(
    connector: BaseConnector, rec: EntityRecord, state: FetchState, policy: ChunkPolicy
) -> asyncio.Task[Page]:
    request = PageRequest(rec.entity, state, policy.page_size, rec.since, rec.mode)
    crash_point("before_fetch")
    return asyncio.ensure_future(connector.fetch_page(request))


async def _land_page(run: _Chunk, destination: Destination, page: Page) -> None:
    rec = run.rec
    mark = page.max_watermark()
    await destination.write_page(rec.job_id, rec.entity, rec.mode, page.records, mark)
    crash_point("after_page_write")
    # Only now, with the page committed, may the checkpoint move past it.
    watermark = rec.watermark if mark is None or (rec.watermark and rec.watermark >= mark) else mark
    await run.save(
        fetch_state=rec.fetch_state.advance(page),
        api_calls=rec.api_calls + 1,
        total_hint=page.total if page.total is not None else rec.total_hint,
        watermark=watermark,
    )
    crash_point("after_checkpoint")
    run.pages += 1
    run.records += len(page.records)
    if run.emitter:
        r = run.rec
        run.emitter.emit(
            PageWritten(
                r.job_id, r.entity, r.chunk_index, len(page.records), r.records, r.total_hint
            )
        )


async def _close_chunk(run: _Chunk, destination: Destination) -> None:
    rec = run.rec
    if rec.fetch_state.has_more:
        await run.fire("chunk_finished", chunk_index=rec.chunk_index + 1, attempts=0)
        return
    # Crash-safe: finalize is idempotent, and a crash before "complete" lands here again.
    await destination.finalize(rec.job_id, rec.entity, rec.mode)
    crash_point("after_finalize")
    await run.fire("complete", chunk_index=rec.chunk_index + 1, attempts=0)


async def _record_failure(run: _Chunk, exc: ConnectorError, retry: RetryPolicy) -> None:
    rec = run.rec
    exc = exc.with_context(rec.entity, None)
    error = ErrorInfo(exc.kind.value, str(exc), _now(), exc.retry_after)
    attempt = rec.attempts + 1
    delay = retry.next_delay(attempt, exc)
    if delay is None:
        await run.fire("fail", error, attempts=attempt, last_error=error)
        return
    await run.fire("retry_chunk", error, attempts=attempt, last_error=error)
    run.emitter.emit(RetryScheduled(rec.job_id, rec.entity, rec.chunk_index, attempt, delay, error))
    run.retry_delay = delay


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
