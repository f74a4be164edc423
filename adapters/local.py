"""The local runner: drives chunks in-process, entities concurrently, and waits out retries.

It owns no sync logic: every decision is :func:`statesync.perform_sync_chunk`'s. The
runner takes a lease per entity (so two workers never drive one entity), renews it while
working, sleeps the delays the retry policy asks for, and stops cleanly after the current
page's checkpoint when asked (SIGINT/SIGTERM through :meth:`LocalRunner.install_signal_handlers`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from statesync._budget import BudgetRegistry
from statesync._chunk import ChunkOutcome, apply_trigger, perform_sync_chunk
from statesync._handle import JobHandle
from statesync._instances import Instance, open_instance, resolve_instance, validate_job_id
from statesync._lease import HOST, LeaseAttempt, LeaseKeeper, take_lease
from statesync._models import EntityRecord, JobSpec, Lease, SyncMode, SyncState
from statesync._namespace import PARAM as NAMESPACE
from statesync._namespace import effective_namespace, job_namespace, namespaced
from statesync._policy import ChunkPolicy, PolicySet, RetryPolicy
from statesync._status import Holder, Outcome
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.errors import ConfigurationError, DatabaseLockedError, JobBusyError, LeaseError
from statesync.events import Emitter, JobFinished, LeaseTakeover, LeaseWait, Listener
from statesync.store import StateStore

_log = logging.getLogger("statesync.local")

PolicyFor = Callable[[str], RetryPolicy]
_LOCKED_PAUSE = 1.0
"""Seconds before a chunk that found a SQLite file locked is tried again."""


@frozen
class EntityResult:
    """How a run left one entity. ``outcome`` is the typed verdict; ``error`` and
    ``error_kind`` are the error it failed with (none once it completed)."""

    entity: str
    state: SyncState
    records: int
    chunks: int
    error: str | None = None
    note: str | None = None
    outcome: Outcome = Outcome.INTERRUPTED
    error_kind: str | None = None
    holder: Holder | None = None


@frozen
class JobResult:
    job_id: str
    """The id the store keeps this run's instance under (see :attr:`instance`)."""
    entities: tuple[EntityResult, ...]
    interrupted: bool
    instance: int = 1

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(e.state is SyncState.COMPLETE for e in self.entities)

    def outcomes(self) -> set[Outcome]:
        return {e.outcome for e in self.entities}


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
        parallel_entities: int = 4,
        listeners: Iterable[Listener] = (),
        owner: str | None = None,
        lease_wait: float | None = 0.0,
        namespace: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        if concurrency is not None:
            warnings.warn(
                "LocalRunner(concurrency=...) is deprecated: use parallel_entities",
                DeprecationWarning,
                stacklevel=2,
            )
            parallel_entities = concurrency
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
        self._sem = asyncio.Semaphore(parallel_entities)
        self._emitter = Emitter(listeners)
        self.owner = owner or f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_wait = lease_wait
        self.namespace = effective_namespace(connector.name, namespace)
        """Where jobs created without a namespace of their own write (None: the shared
        tables). The default is the connector's name; ``""`` asks for the shared tables."""
        self._stop = asyncio.Event()
        self._jobs_stop: dict[str, asyncio.Event] = {}
        # Instances this runner drives now: busy even before their leases are taken.
        self._driving: set[str] = set()

    def retry_policy_for(self, entity: str) -> RetryPolicy:
        if self._retry_fn is not None:
            return self._retry_fn(entity)
        return self.policies.retry_for(self.connector.name, entity)

    def chunk_policy_for(self, entity: str) -> ChunkPolicy:
        return self.policies.chunk_for(self.connector.name, entity)

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self, job_id: str | None = None) -> None:
        """Finish the current page's checkpoint, then stop every entity (of ``job_id``
        only, when given: the runner's other jobs go on)."""
        if job_id is None:
            self._stop.set()
        else:
            self._job_stop(job_id).set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _job_stop(self, job_id: str) -> asyncio.Event:
        return self._jobs_stop.setdefault(job_id, asyncio.Event())

    def _stopped(self, job_id: str) -> bool:
        event = self._jobs_stop.get(job_id)
        return self._stop.is_set() or (event is not None and event.is_set())

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
        namespace: str | None = None,
    ) -> str:
        """Record a new job; incremental entities start from the destination's watermark.

        ``namespace`` (default: the runner's; ``""``: the shared tables) is where its
        tables go; it is stored with the job.
        """
        job_id = job_id or f"job-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        now = datetime.now(UTC)
        params = dict(params or {})
        chosen = self.namespace if namespace is None else effective_namespace("", namespace)
        if chosen is not None:
            params[NAMESPACE] = chosen
        spec = JobSpec(job_id, self.connector.name, tuple(entities), mode, params, now)
        target = namespaced(self.destination, job_namespace(spec))
        records = [
            EntityRecord(
                job_id=job_id,
                entity=entity,
                mode=mode,
                since=await self._since(target, entity, mode),
                created_at=now,
                updated_at=now,
                state_since=now,
            )
            for entity in entities
        ]
        await self.store.create_job(spec, records)
        return job_id

    @staticmethod
    async def _since(target: Destination, entity: str, mode: SyncMode) -> datetime | None:
        if mode is SyncMode.FULL:
            return None
        return await target.watermark(entity)

    async def open_job(
        self,
        entities: Sequence[str],
        *,
        mode: SyncMode = SyncMode.FULL,
        job_id: str | None = None,
        params: Mapping[str, object] | None = None,
        namespace: str | None = None,
    ) -> Instance:
        """Create ``job_id``, or its next instance when the last one finished.

        An unfinished last instance nobody drives is returned to be resumed; one a live
        worker drives raises :class:`~statesync.errors.JobBusyError`.
        """
        if job_id is None:
            store_id = await self.create_job(
                entities, mode=mode, params=params, namespace=namespace
            )
            return Instance(store_id, 1, store_id, created=True)

        async def create(store_id: str) -> None:
            await self.create_job(
                entities, mode=mode, job_id=store_id, params=params, namespace=namespace
            )

        instance = await open_instance(self.store, validate_job_id(job_id), create)
        if instance.store_id in self._driving:
            raise JobBusyError(job_id, {})
        return instance

    async def sync(
        self, entities: Sequence[str], *, mode: SyncMode = SyncMode.FULL, job_id: str | None = None
    ) -> JobResult:
        """Run ``entities`` to the end; a reused ``job_id`` runs a new instance of it."""
        instance = await self.open_job(entities, mode=mode, job_id=job_id)
        return await self.run(instance.store_id, instance=instance.number)

    def sync_blocking(
        self, entities: Sequence[str], *, mode: SyncMode = SyncMode.FULL, job_id: str | None = None
    ) -> JobResult:
        """:meth:`sync` for code without an event loop (scripts, notebooks' cells, cron)."""
        return asyncio.run(self.sync(entities, mode=mode, job_id=job_id))

    async def start(
        self,
        entities: Sequence[str],
        *,
        mode: SyncMode = SyncMode.FULL,
        job_id: str | None = None,
        params: Mapping[str, object] | None = None,
        namespace: str | None = None,
    ) -> JobHandle:
        """Open the job (see :meth:`open_job`) and run it in a task; returns its handle."""
        instance = await self.open_job(
            entities, mode=mode, job_id=job_id, params=params, namespace=namespace
        )
        return self.attach(instance)

    async def resume(self, job_id: str, *, retry_failed: bool = False) -> JobHandle:
        """Run the latest instance of ``job_id`` on from where it stopped; its handle."""
        number, store_id = await resolve_instance(self.store, job_id)
        instance = Instance(job_id, number, store_id, created=False)
        return self.attach(instance, retry_failed=retry_failed)

    def attach(self, instance: Instance, *, retry_failed: bool = False) -> JobHandle:
        self._driving.add(instance.store_id)
        task = asyncio.create_task(
            self.run(instance.store_id, retry_failed=retry_failed, instance=instance.number)
        )
        # A task cancelled before it ran never reaches run()'s own clean-up.
        task.add_done_callback(lambda _: self._driving.discard(instance.store_id))
        return JobHandle(self, instance, task)

    async def run(self, job_id: str, *, retry_failed: bool = False, instance: int = 1) -> JobResult:
        """Drive every unfinished entity of ``job_id`` until it ends or a stop is asked.

        ``job_id`` is the store's id of the instance (what :meth:`create_job` returned).
        """
        self._driving.add(job_id)
        try:
            spec = await self.store.get_job(job_id)
            target = namespaced(self.destination, job_namespace(spec))
            if retry_failed:
                await self._resume_failed(job_id)
            work = (self._guarded(job_id, e, target) for e in spec.entities)
            results = await _all_or_cancel(work)
            stopped = self._stopped(job_id)
            if not stopped:
                await self.store.finish_job(job_id)
        finally:
            self._jobs_stop.pop(job_id, None)
            self._driving.discard(job_id)
        self._emitter.emit(JobFinished(job_id, tuple((r.entity, r.state) for r in results)))
        return JobResult(job_id, tuple(results), stopped, instance)

    async def _resume_failed(self, job_id: str) -> None:
        for rec in await self.store.list_entities(job_id):
            if rec.state is SyncState.FAILED:
                await apply_trigger(
                    self.store, job_id, rec.entity, "resume", emitter=self._emitter, attempts=0
                )

    # -- one entity --------------------------------------------------------------

    async def _guarded(self, job_id: str, entity: str, target: Destination) -> EntityResult:
        async with self._sem:
            rec = await self.store.get_entity(job_id, entity)
            if rec.state in (SyncState.COMPLETE, SyncState.CANCELLED) or self._stopped(job_id):
                return _result(rec)
            got = await self._acquire(job_id, entity, target)
            if got.lease is None:
                rec = await self.store.get_entity(job_id, entity)
                held = _holder(got.holder)
                who = f": {got.holder.holder()}" if got.holder is not None else ""
                note = f"another worker holds the lease on {entity!r}{who}"
                return _result(rec, note=note, outcome=Outcome.BUSY, holder=held)
            keeper = LeaseKeeper(self.store, got.lease, self.chunk_policy_for(entity).lease_ttl)
            try:
                return await self._drive(job_id, entity, keeper, target)
            except LeaseError as exc:
                rec = await self.store.get_entity(job_id, entity)
                return _result(rec, note=f"lease lost: {exc}", outcome=Outcome.INTERRUPTED)
            finally:
                await keeper.release()

    async def _acquire(self, job_id: str, entity: str, target: Destination) -> LeaseAttempt:
        """Take the lease (over from a dead holder at once), waiting up to ``lease_wait``."""
        ttl = self.chunk_policy_for(entity).lease_ttl
        floor = await self._fence_floor(job_id, entity, target)
        loop = asyncio.get_running_loop()
        deadline = None if self.lease_wait is None else loop.time() + self.lease_wait
        while True:
            got = await take_lease(self.store, job_id, entity, self.owner, ttl, min_token=floor)
            if got.took_over is not None:
                self._emitter.emit(LeaseTakeover(job_id, entity, got.took_over.holder()))
            left = None if deadline is None else deadline - loop.time()
            if got.lease is not None or (left is not None and left <= 0):
                return got
            if got.holder is not None:
                expires_in = max(0.0, got.holder.expires_at - time.time())
                self._emitter.emit(LeaseWait(job_id, entity, got.holder.holder(), expires_in, left))
            if await self._sleep(min(1.0, ttl / 4, left if left is not None else 1.0), job_id):
                return LeaseAttempt(None, got.holder)

    async def _fence_floor(self, job_id: str, entity: str, target: Destination) -> int:
        """The lowest token the destination accepts: above the highest it has seen.

        Only a store restored from an older snapshot is ever behind it.
        """
        rec = await self.store.get_entity(job_id, entity)
        seen = (await target.inspect(rec.destination_job, entity)).fence
        return 0 if seen is None else seen + 1

    async def _drive(
        self, job_id: str, entity: str, keeper: LeaseKeeper, target: Destination
    ) -> EntityResult:
        retry, chunk = self.retry_policy_for(entity), self.chunk_policy_for(entity)
        while not self._stopped(job_id):
            try:
                out = await perform_sync_chunk(
                    job_id=job_id,
                    entity=entity,
                    connector=self.connector,
                    store=self.store,
                    destination=target,
                    chunk_policy=chunk,
                    budget=self.budgets.for_connector(self.connector, chunk),
                    retry_policy=retry,
                    lease=keeper.current(),
                    should_stop=lambda: self._stopped(job_id),
                    emitter=self._emitter,
                )
            except DatabaseLockedError as exc:
                # Retryable: the holder may let go; while it does not, our own lease
                # cannot be renewed either, and current() reports it lost.
                _log.warning("%s: %s; trying again", entity, exc)
                await self._sleep(_LOCKED_PAUSE, job_id)
                continue
            if out.is_terminal or out.interrupted:
                break
            if out.retry_in is not None:
                await self._wait_retry(out)
        return _result(await self.store.get_entity(job_id, entity))

    async def _wait_retry(self, out: ChunkOutcome) -> None:
        assert out.retry_in is not None
        # The engine has emitted RetryScheduled or, for a server-timed rate limit, RateLimitWait.
        verb = "waiting for the rate limit of" if out.waiting else "retrying"
        _log.info("%s %s chunk %d: %.2fs", verb, out.entity, out.chunk_index, out.retry_in)
        await self._sleep(out.retry_in, out.job_id)

    async def _sleep(self, seconds: float, job_id: str) -> bool:
        """Sleep, waking early on a stop request (the runner's or the job's)."""
        waits = [asyncio.ensure_future(self._stop.wait())]
        waits.append(asyncio.ensure_future(self._job_stop(job_id).wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._stopped(job_id)


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


_OUTCOME_OF_STATE = {
    SyncState.COMPLETE: Outcome.COMPLETE,
    SyncState.FAILED: Outcome.FAILED,
    SyncState.CANCELLED: Outcome.CANCELLED,
}


def _result(
    rec: EntityRecord,
    note: str | None = None,
    *,
    outcome: Outcome | None = None,
    holder: Holder | None = None,
) -> EntityResult:
    error = rec.last_error if rec.state is not SyncState.COMPLETE else None
    return EntityResult(
        entity=rec.entity,
        state=rec.state,
        records=rec.records,
        chunks=rec.chunk_index,
        error=error.message if error else None,
        note=note,
        outcome=outcome or _OUTCOME_OF_STATE.get(rec.state, Outcome.INTERRUPTED),
        error_kind=error.kind if error else None,
        holder=holder,
    )


def _holder(lease: Lease | None) -> Holder | None:
    if lease is None:
        return None
    return Holder(lease.owner, datetime.fromtimestamp(lease.expires_at, UTC), lease.host, lease.pid)
