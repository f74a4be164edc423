"""The local runner: drives chunks in-process, entities concurrently, and waits out retries.

It owns no sync logic: every decision is :func:`statesync.perform_sync_chunk`'s. The
runner takes a lease per entity (so two workers never drive one entity), renews it while
working, sleeps the delays the retry policy asks for, and stops cleanly after the current
page's checkpoint when asked (SIGINT/SIGTERM through :meth:`LocalRunner.install_signal_handlers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from statesync._budget import BudgetRegistry
from statesync._chunk import ChunkOutcome, apply_trigger, perform_sync_chunk
from statesync._lease import HOST, LeaseAttempt, LeaseKeeper, take_lease
from statesync._models import EntityRecord, JobSpec, SyncMode, SyncState
from statesync._policy import ChunkPolicy, PolicySet, RetryPolicy
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.errors import ConfigurationError, LeaseError
from statesync.events import Emitter, JobFinished, LeaseTakeover, LeaseWait, Listener
from statesync.store import StateStore

_log = logging.getLogger("statesync.local")

PolicyFor = Callable[[str], RetryPolicy]


@frozen
class EntityResult:
    entity: str
    state: SyncState
    records: int
    chunks: int
    error: str | None = None
    note: str | None = None


@frozen
class JobResult:
    job_id: str
    entities: tuple[EntityResult, ...]
    interrupted: bool

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(e.state is SyncState.COMPLETE for e in self.entities)


class LocalRunner:
    """Runs sync jobs in this process.

    Policies: either ``policies`` (a :class:`PolicySet`, resolved per connector and
    entity, e.g. from a TOML file) or a single ``chunk_policy`` / ``retry_policy``; a
    ``retry_policy`` may also be a function from entity name to policy.
    ``lease_wait`` is how long to wait for an entity another live worker holds before
    giving up on it (``None``: wait as long as it takes); a holder on this host whose
    process is gone is taken over at once.
    """

    def __init__(
        self,
        *,
        connector: BaseConnector,
        store: StateStore,
        destination: Destination,
        chunk_policy: ChunkPolicy | None = None,
        retry_policy: RetryPolicy | PolicyFor | None = None,
        policies: PolicySet | None = None,
        budgets: BudgetRegistry | None = None,
        concurrency: int = 4,
        listeners: Iterable[Listener] = (),
        owner: str | None = None,
        lease_wait: float | None = 0.0,
    ) -> None:
        self.connector = connector
        self.store = store
        self.destination = destination
        if policies is not None and (chunk_policy or retry_policy):
            raise ConfigurationError("give either policies or chunk_policy/retry_policy")
        self.policies = policies or PolicySet(
            retry=retry_policy if isinstance(retry_policy, RetryPolicy) else RetryPolicy(),
            chunk=chunk_policy or ChunkPolicy(),
        )
        self._retry_fn = None if isinstance(retry_policy, RetryPolicy) else retry_policy
        # One budget per API account, shared by all this runner's entities; pass one
        # registry to several runners (or RedisBudgets across processes) to share more.
        self.budgets = budgets or BudgetRegistry()
        self._sem = asyncio.Semaphore(concurrency)
        self._emitter = Emitter(listeners)
        self.owner = owner or f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_wait = lease_wait
        self._stop = asyncio.Event()

    def retry_policy_for(self, entity: str) -> RetryPolicy:
        if self._retry_fn is not None:
            return self._retry_fn(entity)
        return self.policies.retry_for(self.connector.name, entity)

    def chunk_policy_for(self, entity: str) -> ChunkPolicy:
        return self.policies.chunk_for(self.connector.name, entity)

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current page's checkpoint, then stop every entity."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)

    # -- jobs --------------------------------------------------------------------

    async def create_job(
        self,
        entities: Sequence[str],
        *,
        mode: SyncMode = SyncMode.FULL,
        job_id: str | None = None,
        params: Mapping[str, object] | None = None,
    ) -> str:
        """Record a new job; incremental entities start from the destination's watermark."""
        job_id = job_id or f"job-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        now = datetime.now(UTC)
        spec = JobSpec(job_id, self.connector.name, tuple(entities), mode, dict(params or {}), now)
        records = [
            EntityRecord(
                job_id=job_id,
                entity=entity,
                mode=mode,
                since=await self._since(entity, mode),
                created_at=now,
                updated_at=now,
                state_since=now,
            )
            for entity in entities
        ]
        await self.store.create_job(spec, records)
        return job_id

    async def _since(self, entity: str, mode: SyncMode) -> datetime | None:
        if mode is SyncMode.FULL:
            return None
        return await self.destination.watermark(entity)

    async def sync(
        self, entities: Sequence[str], *, mode: SyncMode = SyncMode.FULL, job_id: str | None = None
    ) -> JobResult:
        return await self.run(await self.create_job(entities, mode=mode, job_id=job_id))

    def sync_blocking(
        self, entities: Sequence[str], *, mode: SyncMode = SyncMode.FULL, job_id: str | None = None
    ) -> JobResult:
        """:meth:`sync` for code without an event loop (scripts, notebooks' cells, cron)."""
        return asyncio.run(self.sync(entities, mode=mode, job_id=job_id))

    async def run(self, job_id: str, *, retry_failed: bool = False) -> JobResult:
        """Drive every unfinished entity of ``job_id`` until it ends or a stop is asked."""
        spec = await self.store.get_job(job_id)
        if retry_failed:
            await self._resume_failed(job_id)
        results = await _all_or_cancel(self._guarded(job_id, e) for e in spec.entities)
        if not self.stopping:
            await self.store.finish_job(job_id)
        self._emitter.emit(JobFinished(job_id, tuple((r.entity, r.state) for r in results)))
        return JobResult(job_id, tuple(results), self.stopping)

    async def _resume_failed(self, job_id: str) -> None:
        for rec in await self.store.list_entities(job_id):
            if rec.state is SyncState.FAILED:
                await apply_trigger(
                    self.store, job_id, rec.entity, "resume", emitter=self._emitter, attempts=0
                )

    # -- one entity --------------------------------------------------------------

    async def _guarded(self, job_id: str, entity: str) -> EntityResult:
        async with self._sem:
            got = await self._acquire(job_id, entity)
            if got.lease is None:
                rec = await self.store.get_entity(job_id, entity)
                held = f": {got.holder.holder()}" if got.holder is not None else ""
                return _result(rec, note=f"another worker holds the lease on {entity!r}{held}")
            keeper = LeaseKeeper(self.store, got.lease, self.chunk_policy_for(entity).lease_ttl)
            try:
                return await self._drive(job_id, entity, keeper)
            except LeaseError as exc:
                rec = await self.store.get_entity(job_id, entity)
                return _result(rec, note=f"lease lost: {exc}")
            finally:
                await keeper.release()

    async def _acquire(self, job_id: str, entity: str) -> LeaseAttempt:
        """Take the lease (over from a dead holder at once), waiting up to ``lease_wait``."""
        ttl = self.chunk_policy_for(entity).lease_ttl
        loop = asyncio.get_running_loop()
        deadline = None if self.lease_wait is None else loop.time() + self.lease_wait
        while True:
            got = await take_lease(self.store, job_id, entity, self.owner, ttl)
            if got.took_over is not None:
                self._emitter.emit(LeaseTakeover(job_id, entity, got.took_over.holder()))
            left = None if deadline is None else deadline - loop.time()
            if got.lease is not None or (left is not None and left <= 0):
                return got
            if got.holder is not None:
                expires_in = max(0.0, got.holder.expires_at - time.time())
                self._emitter.emit(LeaseWait(job_id, entity, got.holder.holder(), expires_in, left))
            if await self._sleep(min(1.0, ttl / 4, left if left is not None else 1.0)):
                return LeaseAttempt(None, got.holder)

    async def _drive(self, job_id: str, entity: str, keeper: LeaseKeeper) -> EntityResult:
        retry, chunk = self.retry_policy_for(entity), self.chunk_policy_for(entity)
        while not self.stopping:
            out = await perform_sync_chunk(
                job_id=job_id,
                entity=entity,
                connector=self.connector,
                store=self.store,
                destination=self.destination,
                chunk_policy=chunk,
                budget=self.budgets.for_connector(self.connector, chunk),
                retry_policy=retry,
                lease=keeper.current(),
                should_stop=lambda: self.stopping,
                emitter=self._emitter,
            )
            if out.finished or out.interrupted:
                break
            if out.retry_in is not None:
                await self._wait_retry(out)
        return _result(await self.store.get_entity(job_id, entity))

    async def _wait_retry(self, out: ChunkOutcome) -> None:
        assert out.retry_in is not None
        # The engine has emitted RetryScheduled or, for a server-timed rate limit, RateLimitWait.
        verb = "waiting for the rate limit of" if out.waiting else "retrying"
        _log.info("%s %s chunk %d: %.2fs", verb, out.entity, out.chunk_index, out.retry_in)
        await self._sleep(out.retry_in)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early on a stop request; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return self.stopping


async def _all_or_cancel(work: Iterable[Coroutine[Any, Any, EntityResult]]) -> list[EntityResult]:
    """Run every entity; when one raises (the store or destination is gone), stop the
    others and wait for them (their leases are released) before raising it."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _result(rec: EntityRecord, note: str | None = None) -> EntityResult:
    return EntityResult(
        entity=rec.entity,
        state=rec.state,
        records=rec.records,
        chunks=rec.chunk_index,
        error=rec.last_error.message if rec.last_error else None,
        note=note,
    )
