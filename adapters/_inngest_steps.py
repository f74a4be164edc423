"""The bodies of the adapter's Inngest steps: each drives the engine once, decides nothing.

Every decision (what a chunk fetches, whether an error is retried and after how long,
when an entity is complete or failed) is :func:`statesync.perform_sync_chunk`'s and the
:class:`~statesync.RetryPolicy`'s; these bodies only translate the outcome into what
Inngest understands (a summary, ``RetryAfterError`` or ``NonRetriableError``).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import attrs
from attrs import field, frozen

from statesync._budget import BudgetRegistry
from statesync._chunk import ChunkOutcome, apply_trigger, perform_sync_chunk
from statesync._instances import (
    instance_id,
    latest_instance,
    open_instance,
    resolve_instance,
    validate_job_id,
)
from statesync._lease import LeaseKeeper
from statesync._models import EntityRecord, JobSpec, Lease, SyncMode, SyncState
from statesync._namespace import PARAM as NAMESPACE
from statesync._namespace import job_namespace, namespaced
from statesync._policy import PolicySet
from statesync.adapters._inngest_model import (
    INNGEST,
    RUNNING_STATES,
    ChunkSummary,
    EntitySummary,
    EntityTask,
    JobBatch,
    JobPlan,
    JobRequest,
    JobSummary,
    job_instance,
    retry_after,
)
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.errors import (
    ConfigurationError,
    ConflictError,
    InvalidTransitionError,
    JobBusyError,
    LeaseError,
    StatesyncError,
)
from statesync.events import Emitter, Listener
from statesync.store import StateStore

with INNGEST.importing():
    import inngest

if TYPE_CHECKING:
    from inngest import RetryAfterError as _RetryAfterError
elif INNGEST.available:
    _RetryAfterError = inngest.RetryAfterError
else:  # nothing raises it without the SDK; it still exists for `except` clauses
    _RetryAfterError = StatesyncError

ConnectorFactory = Callable[[JobSpec], BaseConnector]

_SPEC_CACHE_SIZE = 256
_CONFLICT_SHARE = 0.25
"""A conflicting delivery retries after this share of the lease TTL: the holder is
mid-chunk, renewing every third of it."""


class StepConflictError(_RetryAfterError):
    """Another delivery holds the entity's lease: this one fetched nothing, and retries.

    Inngest delivers a step again while the first delivery may still run (a lost
    response, a timeout); the retry finds the chunk done. ``__cause__`` is the
    :class:`~statesync.errors.LeaseError`.
    """


@frozen
class StepBodies:
    """The steps' bodies, with what they need: the user's connectors, store,
    destination and policies (the engine is :func:`statesync.perform_sync_chunk`).

    ``namespaces`` maps a connector name to the namespace its new jobs write into
    (``None``: the shared tables); a request's ``params["namespace"]`` overrides it.
    """

    connectors: Mapping[str, ConnectorFactory]
    store: StateStore
    destination: Destination
    policies: PolicySet
    listeners: tuple[Listener, ...] = ()
    budgets: BudgetRegistry = field(factory=BudgetRegistry)
    namespaces: Mapping[str, str | None] = field(factory=dict)
    _specs: OrderedDict[str, JobSpec] = field(factory=OrderedDict, init=False)

    # -- job --------------------------------------------------------------------

    async def plan_job(self, req: JobRequest, default_id: str, per_run: int) -> JobPlan:
        """Create the job if absent (a replayed or duplicated request finds it) and
        say which entities still need a run, or, past ``per_run`` entities, which
        batches of them get a run of their own."""
        spec = await self._open(req, req.job_id or default_id)
        job_id, account, instance = spec.job_id, await self._account(spec), job_instance(spec)
        count = len(spec.entities)
        if count > per_run:
            slices = tuple((i, min(i + per_run, count)) for i in range(0, count, per_run))
            return JobPlan(job_id, instance, account, batches=slices)
        tasks = await self._tasks(spec, account, spec.entities, req.retry_failed)
        return JobPlan(job_id, instance, account, tasks=tasks)

    async def plan_batch(self, batch: JobBatch) -> JobPlan:
        spec = await self._spec(batch.job_id)
        if job_instance(spec) != batch.instance:
            raise inngest.NonRetriableError(f"job {batch.job_id!r} is no longer {batch.instance}")
        account = await self._account(spec)
        names = spec.entities[batch.start : batch.stop]
        tasks = await self._tasks(spec, account, names, batch.retry_failed)
        return JobPlan(batch.job_id, batch.instance, account, tasks=tasks)

    async def _tasks(
        self, spec: JobSpec, account: str, names: tuple[str, ...], retry_failed: bool
    ) -> tuple[EntityTask, ...]:
        """One task per unfinished entity: the job's first chain, or a resumed one."""
        instance, wanted = job_instance(spec), set(names)
        tasks = []
        for rec in await self.store.list_entities(spec.job_id):
            if rec.entity not in wanted:
                continue
            task = EntityTask(spec.job_id, rec.entity, account, instance)
            if rec.state is SyncState.FAILED and retry_failed:
                task = await self._resume(task) or task
            elif rec.state not in RUNNING_STATES:
                continue
            tasks.append(task)
        order = {name: i for i, name in enumerate(names)}
        return tuple(sorted(tasks, key=lambda t: order[t.entity]))

    async def _resume(self, task: EntityTask) -> EntityTask | None:
        """Resume a failed entity as a new chain, keyed by the version the resume wrote
        (a concurrent request's resume wins the CAS, and its own chain runs)."""
        try:
            rec = await apply_trigger(self.store, task.job_id, task.entity, "resume", attempts=0)
        except (InvalidTransitionError, ConflictError):
            return None
        return attrs.evolve(task, chain=f"resume-{rec.version}", start=rec.chunk_index)

    async def _account(self, spec: JobSpec) -> str:
        async with self._connector(spec) as connector:
            return connector.account

    async def batch_final(self, batch: JobBatch) -> bool:
        """Whether every entity of ``batch`` is final already."""
        spec = await self._spec(batch.job_id)
        names = set(spec.entities[batch.start : batch.stop])
        records = await self.store.list_entities(batch.job_id)
        return all(r.state not in RUNNING_STATES for r in records if r.entity in names)

    async def split_final(
        self, tasks: tuple[EntityTask, ...]
    ) -> tuple[list[EntityTask], list[tuple[EntityTask, SyncState]]]:
        """Tasks still running, and those whose entity is final already."""
        running, final = [], []
        for task in tasks:
            rec = await self.store.get_entity(task.job_id, task.entity)
            if rec.state in RUNNING_STATES:
                running.append(task)
            else:
                final.append((task, rec.state))
        return running, final

    async def _open(self, req: JobRequest, job_id: str) -> JobSpec:
        """The instance of ``job_id`` this request drives (its spec, under its store id).

        As the local runner's :func:`~statesync.open_instance`: a new instance when the
        latest finished, else the latest. A live chain driving it is no refusal here:
        the request joins it (its events carry the same instance, so they collapse).
        ``retry_failed`` always means the latest instance, as ``resume`` does.
        """
        self._factory(req.connector)  # refuse unknown connectors before storing anything
        try:
            validate_job_id(job_id)
        except ConfigurationError as exc:
            raise inngest.NonRetriableError(str(exc)) from exc
        latest = await latest_instance(self.store, job_id)
        if latest:
            spec = await self.store.get_job(instance_id(job_id, latest))
            if spec.connector != req.connector:
                raise inngest.NonRetriableError(
                    f"job {job_id!r} exists with connector {spec.connector!r}, "
                    f"not {req.connector!r}"
                )
            if req.retry_failed:  # a resume of the latest instance, not a new run
                return spec
        try:
            opened = await open_instance(self.store, job_id, partial(self._create, req))
            store_id = opened.store_id
        except JobBusyError:
            _, store_id = await resolve_instance(self.store, job_id)
        return await self.store.get_job(store_id)

    async def _create(self, req: JobRequest, job_id: str) -> None:
        """Create instance ``job_id``; ConflictError when a concurrent request did."""
        now = datetime.now(UTC)
        params = {**self._namespace_param(req.connector), **req.params}
        spec = JobSpec(job_id, req.connector, req.entities, req.mode, params, now)
        try:
            target = namespaced(self.destination, job_namespace(spec))
        except ConfigurationError as exc:
            raise inngest.NonRetriableError(f"params: {exc}") from exc
        records = [
            EntityRecord(
                job_id=job_id,
                entity=entity,
                mode=req.mode,
                since=await self._since(target, entity, req.mode),
                created_at=now,
                updated_at=now,
                state_since=now,
            )
            for entity in req.entities
        ]
        await self.store.create_job(spec, records)

    def _namespace_param(self, connector: str) -> dict[str, str]:
        name = self.namespaces.get(connector)
        return {} if name is None else {NAMESPACE: name}

    def _target(self, spec: JobSpec) -> Destination:
        """The destination as the job's namespace sees it (stored jobs without one: shared)."""
        return namespaced(self.destination, job_namespace(spec))

    @staticmethod
    async def _since(target: Destination, entity: str, mode: SyncMode) -> datetime | None:
        return None if mode is SyncMode.FULL else await target.watermark(entity)

    async def summarize(self, job_id: str) -> JobSummary:
        records = await self.store.list_entities(job_id)
        if not any(r.state in RUNNING_STATES for r in records):
            await self.store.finish_job(job_id)
        spec = await self.store.get_job(job_id)
        order = {name: i for i, name in enumerate(spec.entities)}
        ordered = sorted(records, key=lambda r: order.get(r.entity, len(order)))
        return JobSummary(job_id, tuple(EntitySummary.of(r) for r in ordered))

    # -- entity -----------------------------------------------------------------

    async def locate(self, task: EntityTask) -> ChunkSummary:
        """Where a run starts: the store's record, not anything an event claims."""
        rec = await self.store.get_entity(task.job_id, task.entity)
        return ChunkSummary(
            job_id=rec.job_id,
            entity=rec.entity,
            chunk=rec.chunk_index - 1,
            next_chunk=rec.chunk_index,
            state=rec.state,
            fetch_state=rec.fetch_state,
            records=rec.records,
            attempts=rec.attempts,
            error=rec.last_error,
        )

    async def run_chunk(self, task: EntityTask, chunk: int, owner: str) -> ChunkSummary:
        """Run chunk ``chunk`` (or find it done) and settle the outcome for Inngest.

        ``owner`` is unique per delivery of the step, so of two deliveries at once
        exactly one holds the lease; the other raises :class:`StepConflictError` before
        any request. A chunk the store shows done needs no lease at all.
        """
        spec = await self._spec(task.job_id)
        rec = await self.store.get_entity(task.job_id, task.entity)
        if rec.chunk_index > chunk:
            return settle(_already_done(rec, chunk))
        chunk_policy = self.policies.chunk_for(spec.connector, task.entity)
        async with (
            _no_retry_on(ConfigurationError),
            self._connector(spec) as connector,
            self._lease(task, spec, owner) as lease,
        ):
            out = await perform_sync_chunk(
                job_id=task.job_id,
                entity=task.entity,
                connector=connector,
                store=self.store,
                destination=self._target(spec),
                chunk_policy=chunk_policy,
                retry_policy=self.policies.retry_for(spec.connector, task.entity),
                budget=self.budgets.for_connector(connector, chunk_policy),
                lease=lease.current(),
                expected_chunk=chunk,
                emitter=Emitter(self.listeners),
            )
        return settle(out)

    async def entity_state(self, task: EntityTask) -> EntitySummary:
        return EntitySummary.of(await self.store.get_entity(task.job_id, task.entity))

    # -- plumbing ---------------------------------------------------------------

    def _factory(self, name: str) -> ConnectorFactory:
        try:
            return self.connectors[name]
        except KeyError:
            known = ", ".join(sorted(self.connectors)) or "none"
            raise inngest.NonRetriableError(
                f"no connector {name!r} is configured (known: {known})"
            ) from None

    @contextlib.asynccontextmanager
    async def _connector(self, spec: JobSpec) -> AsyncIterator[BaseConnector]:
        connector = self._factory(spec.connector)(spec)
        try:
            yield connector
        finally:
            await connector.aclose()

    @contextlib.asynccontextmanager
    async def _lease(self, task: EntityTask, spec: JobSpec, owner: str) -> AsyncIterator[_Lease]:
        ttl = self.policies.chunk_for(spec.connector, task.entity).lease_ttl
        lease = await self.store.acquire_lease(task.job_id, task.entity, owner, ttl)
        if lease is None:
            # Another delivery (of this step, or of a duplicate chain) drives the
            # entity; by the retry it has likely finished the chunk.
            cause = LeaseError(f"another delivery holds the lease on {task.entity!r}")
            raise StepConflictError(
                f"{task.entity}: {cause}", retry_after(ttl * _CONFLICT_SHARE)
            ) from cause
        keeper = _Lease(LeaseKeeper(self.store, lease, ttl))
        try:
            yield keeper
        finally:
            await keeper.keeper.release()

    async def _spec(self, job_id: str) -> JobSpec:
        # Job specs never change once stored, so a small per-process cache saves a
        # store round trip on every chunk.
        spec = self._specs.get(job_id)
        if spec is None:
            spec = await self.store.get_job(job_id)
            self._specs[job_id] = spec
            while len(self._specs) > _SPEC_CACHE_SIZE:
                self._specs.popitem(last=False)
        return spec


@contextlib.asynccontextmanager
async def _no_retry_on(*kinds: type[Exception]) -> AsyncIterator[None]:
    """A bad setting (an entity name no table can have) fails the same on every retry."""
    try:
        yield
    except kinds as exc:
        raise inngest.NonRetriableError(f"{type(exc).__name__}: {exc}") from exc


@frozen
class _Lease:
    keeper: LeaseKeeper

    def current(self) -> Lease:
        return self.keeper.current()


def _already_done(rec: EntityRecord, chunk: int) -> ChunkOutcome:
    return ChunkOutcome(
        job_id=rec.job_id,
        entity=rec.entity,
        state=rec.state,
        fetch_state=rec.fetch_state,
        chunk_index=chunk,
        attempts=rec.attempts,
        error=rec.last_error,
        already_done=True,
    )


def settle(out: ChunkOutcome) -> ChunkSummary:
    """Translate the engine's verdict: retry after the policy's delay, fail, or report.

    The delay is the engine's (its retry policy's, or the API's ``Retry-After``),
    clamped into the range Inngest honours as given.
    """
    if out.retry_in is not None:
        raise inngest.RetryAfterError(
            f"{out.entity} chunk {out.chunk_index}: {_error_text(out)} (attempt {out.attempts})",
            retry_after(out.retry_in),
        )
    if out.state is SyncState.FAILED:
        # The machine has recorded ``failed`` with the error; Inngest must not retry.
        raise inngest.NonRetriableError(
            f"{out.entity} failed in chunk {out.chunk_index}: {_error_text(out)}"
        )
    return ChunkSummary.of(out)


def _error_text(out: ChunkOutcome) -> str:
    return f"{out.error.kind}: {out.error.message}" if out.error else "unknown error"


def max_attempts(policies: PolicySet) -> int:
    """The most tries any policy allows, per-kind overrides included."""
    retries = [policies.retry, *policies.retry_overrides.values()]
    return max(
        max([p.attempts, *(k.attempts for k in p.kinds.values() if k.attempts is not None)])
        for p in retries
    )
