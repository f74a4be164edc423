"""How one chunk keeps requests in flight while it lands pages strictly after commit.

Three shapes, chosen per entity from the connector's capabilities and the policy:

* **one stream** (the default): page k+1 is fetched while page k is written; with
  ``pages_in_flight > 1`` and a connector that plans offsets (:meth:`plan_pages`), up to
  ``pages_in_flight`` planned pages are in flight. Pages land in order; a planned page is
  :meth:`settle`-d against the checkpoint first, and when it does not fit (offsets
  shifted, a window opened) every planned page is dropped and the stream goes on from
  the checkpoint with one plain request.
* **partitions**: the entity's creation-time windows are walked concurrently, one
  request per window in flight; a page lands when it arrives and moves only its own
  window's cursor (see :mod:`statesync._partitions`).

Every request first takes a slot from the account's rate budget (paced below the
policy's limit, or learning the provider's when none is set). The chunk stops launching
requests at its size (``iterations``) or when one more would end after its deadline
(``target_duration``); requests in flight then land.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import TYPE_CHECKING

import attrs

from statesync import _partitions
from statesync._budget import RateBudget
from statesync._checkpoint import encode, keeper
from statesync._failpoints import crash_point
from statesync._internal import internal_error
from statesync._models import FetchState, Page, PageRequest, RateInfo, TimeWindow
from statesync._policy import ChunkPolicy
from statesync._progress import ProgressGuard
from statesync.connector import BaseConnector, Partitioning
from statesync.destination import CheckpointingDestination, Destination
from statesync.errors import ConfigurationError, ConnectorError, ErrorKind, StatesyncError
from statesync.events import PageWritten

if TYPE_CHECKING:
    from statesync._chunk import _Chunk

_EWMA = 0.3
_NO_REPORT = RateInfo()


def _average(before: float | None, sample: float) -> float:
    return sample if before is None else before + _EWMA * (sample - before)


@attrs.define
class _Flight:
    request: PageRequest
    task: asyncio.Task[Page]
    planned: bool = False
    order: int = 0


@attrs.define
class Pipeline:
    """One chunk's fetching: what may be launched, and landing in order."""

    run: _Chunk
    connector: BaseConnector
    destination: Destination
    policy: ChunkPolicy
    budget: RateBudget | None
    limit: int
    deadline: float | None
    should_stop: Callable[[], bool] | None
    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    fetch_time: float | None = None
    """Moving average of a request's time, budget wait included."""
    land_time: float | None = None
    """Moving average of writing and checkpointing one page."""
    discarded: int = 0
    guards: dict[TimeWindow | None, ProgressGuard] = attrs.field(factory=dict)
    """One no-progress guard per walk: the stream (``None``) or a window's bounds."""
    checkpoints: CheckpointingDestination | None = attrs.field(init=False)
    """The destination, when pages carry their checkpoint into its transaction."""

    def __attrs_post_init__(self) -> None:
        self.checkpoints = keeper(self.connector, self.destination)

    # -- shared ---------------------------------------------------------------------

    def stopping(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def room(self, state: FetchState) -> bool:
        """May one more request be launched for a chunk standing at ``state``?"""
        if not state.has_more or state.iterations_in_chunk + self.in_flight >= self.limit:
            return False
        if self.deadline is None or state.iterations_in_chunk + self.in_flight == 0:
            return True  # a chunk always lands at least one page
        if state.iterations_in_chunk + self.in_flight < self.policy.min_iterations:
            return True
        ahead = (self.fetch_time or 0.0) + (self.land_time or 0.0)
        return self.clock() + ahead <= self.deadline

    def wanted(self) -> int:
        """Requests worth having in flight: enough to cover a request's time with pages
        landing back to back (Little's law), at most the policy's pages_in_flight. When
        landing is the bottleneck (a fast API), that is one, and more in flight costs
        nothing; before anything was measured it is the policy's pages_in_flight."""
        if self.fetch_time is None or not self.land_time:
            return self.policy.pages_in_flight
        return max(1, min(self.policy.pages_in_flight, round(self.fetch_time / self.land_time)))

    def request(self, state: FetchState, window: TimeWindow | None = None) -> PageRequest:
        rec = self.run.rec
        return PageRequest(rec.entity, state, self.policy.page_size, rec.since, rec.mode, window)

    def launch(self, request: PageRequest) -> asyncio.Task[Page]:
        crash_point("before_fetch")
        self.in_flight += 1
        return asyncio.ensure_future(self._fetch(request))

    async def _fetch(self, request: PageRequest) -> Page:
        started = self.clock()
        budget = self.budget
        if budget is not None:
            await budget.acquire()
        try:
            page = await self._fetch_page(request)
        except ConnectorError as exc:
            if budget is not None and exc.kind is ErrorKind.RATE_LIMITED:
                await budget.throttled(exc.retry_after)
            raise
        if budget is not None:
            # Every success counts (a learned pace climbs on them), reported quota or not.
            await budget.observe(page.rate or _NO_REPORT)
        self.fetch_time = _average(self.fetch_time, self.clock() - started)
        return page

    async def _fetch_page(self, request: PageRequest) -> Page:
        """The connector's answer; a bug in it (not one of our errors) becomes typed."""
        try:
            return await self.connector.fetch_page(request)
        except StatesyncError:
            raise
        except Exception as exc:
            raise internal_error(exc) from exc

    def landed_one(self) -> None:
        self.in_flight -= 1

    def guard(self, request: PageRequest, page: Page, after: FetchState) -> None:
        """Stop a walk that does not move (see :mod:`statesync._progress`)."""
        self.guards.setdefault(request.window, ProgressGuard()).check(request, page, after)

    async def cancel(self, tasks: Iterable[asyncio.Task[Page]]) -> None:
        pending = [t for t in tasks if not t.done()]
        for task in tasks:
            self.in_flight -= 1
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, ConnectorError):
                await task
        for task in tasks:
            # Answers nobody will read: retrieve their errors so asyncio does not log them.
            if task.done() and not task.cancelled():
                task.exception()

    async def land(self, page: Page, after: FetchState) -> None:
        """Write ``page``, then (and only then) checkpoint ``after``: in the destination's
        transaction when it keeps checkpoints, else in the store once it has committed."""
        started = self.clock()
        run = self.run
        rec = run.rec
        mark = rec.cap_watermark(page.max_watermark())
        keep = mark is None or (rec.watermark is not None and rec.watermark >= mark)
        # A landed page is progress: the retry policy's count of failures starts over.
        changes = {
            "fetch_state": after,
            "attempts": 0,
            "api_calls": rec.api_calls + 1,
            "total_hint": page.total if page.total is not None else rec.total_hint,
            "watermark": rec.watermark if keep else mark,
        }
        fence = run.lease.token if run.lease is not None else None
        if self.checkpoints is not None:
            new = run.advanced(**changes)
            await self.checkpoints.write_page(
                rec.destination_job, rec.entity, rec.mode, page.records, mark,
                fence=fence, checkpoint=encode(new),
            )  # fmt: skip
            crash_point("after_page_write")
            run.landed(new)
        else:
            await self.destination.write_page(
                rec.destination_job, rec.entity, rec.mode, page.records, mark, fence=fence
            )
            crash_point("after_page_write")
            # Only now, with the page committed, may the checkpoint move past it.
            await run.save(**changes)
        crash_point("after_checkpoint")
        run.pages += 1
        run.records += len(page.records)
        self.land_time = _average(self.land_time, self.clock() - started)
        if run.emitter:
            r = run.rec
            run.emitter.emit(
                PageWritten(
                    r.job_id, r.entity, r.chunk_index, len(page.records), r.records, r.total_hint
                )
            )

    # -- one stream -------------------------------------------------------------------

    async def stream(self) -> bool:
        """Land pages of one ordered stream; True when a stop request ended the chunk."""
        if not self.room(self.run.rec.fetch_state):
            return False
        flights: deque[_Flight] = deque()
        head = self.request(self.run.rec.fetch_state)
        flights.append(_Flight(head, self.launch(head)))
        self._plan(flights)
        try:
            while flights:
                flight = flights.popleft()
                page = await flight.task
                self.landed_one()
                crash_point("after_fetch")
                current = self.run.rec.fetch_state
                if flight.planned:
                    actual = self.request(current)
                    settled = self.connector.settle(flight.request, page, actual)
                    if settled is None:
                        # The plan no longer fits the checkpoint: drop it, go on plainly.
                        self.discarded += 1 + len(flights)
                        await self.cancel([f.task for f in flights])
                        flights.clear()
                        flights.append(_Flight(actual, self.launch(actual)))
                        continue
                    page = settled
                after = current.advance(page)
                self.guard(self.request(current), page, after)
                if self.stopping() or not after.has_more:
                    await self.cancel([f.task for f in flights])
                    flights.clear()
                elif not flights and self.room(after):
                    nxt = self.request(after)
                    flights.append(_Flight(nxt, self.launch(nxt)))
                    # Let the prefetch send its request before a destination that writes
                    # synchronously holds the loop.
                    await asyncio.sleep(0)
                self._plan(flights, after)
                await self.land(page, after)
                if self.stopping():
                    return self.run.rec.fetch_state.has_more
        finally:
            if flights:
                await self.cancel([f.task for f in flights])
        return False

    def _plan(self, flights: deque[_Flight], state: FetchState | None = None) -> None:
        """Top the stream up with planned requests after the last one in flight."""
        if self.policy.pages_in_flight < 2 or not flights or self.stopping():
            return
        state = state if state is not None else self.run.rec.fetch_state
        wanted = self.wanted() - len(flights)
        if wanted <= 0:
            return
        planned = self.connector.plan_pages(flights[-1].request, wanted)
        for request in planned:
            if not self.room(state):
                return
            flights.append(_Flight(request, self.launch(request), planned=True))

    # -- partitions -------------------------------------------------------------------

    async def partitions(self, partitioning: Partitioning) -> bool:
        """Walk the entity's windows concurrently; True when a stop request ended it."""
        run = self.run
        state = _partitions.compact(run.rec.fetch_state)
        if not state.partitions:
            since = run.rec.since
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            since_ts = None if since is None else int(since.timestamp())
            state = attrs.evolve(
                state, partitions=_partitions.initial(partitioning, run.rec.mode, since_ts)
            )
        flights: dict[asyncio.Task[Page], _Flight] = {}
        self._launch_windows(state, flights)
        try:
            while flights:
                done, _ = await asyncio.wait(flights, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: flights[t].order):
                    flight = flights.pop(task)
                    page = task.result()
                    self.landed_one()
                    crash_point("after_fetch")
                    assert flight.request.window is not None
                    self.guard(flight.request, page, _window_after(flight.request, page))
                    state = _partitions.advance(
                        state,
                        flight.request.window,
                        page,
                        partitioning=partitioning,
                        pages_in_flight=self.wanted(),
                        page_size=self.policy.page_size,
                    )
                    if not self.stopping():
                        self._launch_windows(state, flights)
                    await self.land(page, state)
                    if self.stopping():
                        return state.has_more
        finally:
            if flights:
                await self.cancel(list(flights))
        return False

    def _launch_windows(
        self, state: FetchState, flights: dict[asyncio.Task[Page], _Flight]
    ) -> None:
        busy = {f.request.window for f in flights.values()}
        for order, part in enumerate(state.partitions):
            if len(flights) >= self.policy.pages_in_flight or not self.room(state):
                return
            if part.done or part.window in busy:
                continue
            request = self.request(part.state(), window=part.window)
            task = self.launch(request)
            flights[task] = _Flight(request, task, order=order)


def _window_after(request: PageRequest, page: Page) -> FetchState:
    """Where one window's walk stands after ``page`` (what its next request sends)."""
    metadata = page.metadata if page.metadata is not None else request.state.metadata
    return FetchState(
        offset=page.next_offset,
        cursor=page.next_cursor,
        has_more=page.has_more,
        metadata=metadata,
    )


def partitioning_for(
    connector: BaseConnector, state: FetchState, entity: str, policy: ChunkPolicy
) -> Partitioning | None:
    """Whether this chunk walks windows: always once begun so, else only from the start."""
    if not connector.supports_resumable_fetching():
        return None
    found = connector.partitioning(entity)
    if state.partitions:
        if found is None:
            raise ConfigurationError(
                f"entity {entity!r} was checkpointed as time windows, but the connector "
                "no longer offers partitions for it"
            )
        return found
    fresh = state.total_processed == 0 and state.cursor is None and not state.offset
    if found is None or policy.pages_in_flight < 2 or not fresh or not state.has_more:
        return None
    return found
