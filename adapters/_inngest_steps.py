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
from datetime import UTC, datetime, timedelta

import inngest
from attrs import field, frozen

from statesync._budget import BudgetRegistry
from statesync._chunk import ChunkOutcome, apply_trigger, perform_sync_chunk
from statesync._lease import LeaseKeeper
from statesync._models import EntityRecord, JobSpec, Lease, SyncMode, SyncState
from statesync._policy import PolicySet
from statesync.adapters._inngest_model import (
    RUNNING_STATES,
    ChunkSummary,
    EntitySummary,
    EntityTask,
    JobPlan,
    JobRequest,
    JobSummary,
)
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.errors import ConflictError, UnknownJobError
from statesync.events import Emitter, Listener
from statesync.store import StateStore

ConnectorFactory = Callable[[JobSpec], BaseConnector]

_SPEC_CACHE_SIZE = 256


@frozen
class Engine:
    """What the steps need: the user's connectors, store, destination and policies."""

    connectors: Mapping[str, ConnectorFactory]
    store: StateStore
    destination: Destination
    policies: PolicySet
    listeners: tuple[Listener, ...] = ()
    budgets: BudgetRegistry = field(factory=BudgetRegistry)
    _specs: OrderedDict[str, JobSpec] = field(factory=OrderedDict, init=False)

    # -- job --------------------------------------------------------------------

    async def plan_job(self, req: JobRequest, default_id: str) -> JobPlan:
        """Create the job if absent (a replayed or duplicated request finds it) and
        say which entities still need a run."""
        job_id = req.job_id or default_id
        spec = await self._ensure_job(req, job_id)
        if req.retry_failed:
            await self._resume_failed(job_id)
        records = await self.store.list_entities(job_id)
        pending = tuple(r.entity for r in records if r.state in RUNNING_STATES)
        async with self._connector(spec) as connector:
            account = connector.account
        return JobPlan(job_id, account, pending)

    async def _ensure_job(self, req: JobRequest, job_id: str) -> JobSpec:
        self._factory(req.connector)  # refuse unknown connectors before storing anything
        try:
            spec = await self.store.get_job(job_id)
        except UnknownJobError:
            spec = await self._create_job(req, job_id)
        if spec.connector != req.connector:
            raise inngest.NonRetriableError(
                f"job {job_id!r} exists with connector {spec.connector!r}, not {req.connector!r}"
            )
        return spec

    async def _create_job(self, req: JobRequest, job_id: str) -> JobSpec:
        now = datetime.now(UTC)
        spec = JobSpec(job_id, req.connector, req.entities, req.mode, dict(req.params), now)
        records = [
            EntityRecord(
                job_id=job_id,
                entity=entity,
                mode=req.mode,
                since=await self._since(entity, req.mode),
                created_at=now,
                updated_at=now,
                state_since=now,
            )
            for entity in req.entities
        ]
        try:
            await self.store.create_job(spec, records)
        except ConflictError:
            return await self.store.get_job(job_id)  # a concurrent request created it first
        return spec

    async def _since(self, entity: str, mode: SyncMode) -> datetime | None:
        return None if mode is SyncMode.FULL else await self.destination.watermark(entity)

    async def _resume_failed(self, job_id: str) -> None:
        for rec in await self.store.list_entities(job_id):
            if rec.state is SyncState.FAILED:
                await apply_trigger(self.store, job_id, rec.entity, "resume", attempts=0)

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
        """Run chunk ``chunk`` (or find it done) and settle the outcome for Inngest."""
        spec = await self._spec(task.job_id)
        chunk_policy = self.policies.chunk_for(spec.connector, task.entity)
        async with self._connector(spec) as connector, self._lease(task, spec, owner) as lease:
            out = await perform_sync_chunk(
                job_id=task.job_id,
                entity=task.entity,
                connector=connector,
                store=self.store,
                destination=self.destination,
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
            # Another run (a duplicate request, or an attempt Inngest gave up waiting
            # for) is driving this entity; try again once its lease may have lapsed.
            raise inngest.RetryAfterError(
                f"another run holds the lease on {task.entity!r}", timedelta(seconds=ttl)
            )
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


@frozen
class _Lease:
    keeper: LeaseKeeper

    def current(self) -> Lease:
        return self.keeper.current()


def settle(out: ChunkOutcome) -> ChunkSummary:
    """Translate the engine's verdict: retry after the policy's delay, fail, or report."""
    if out.retry_in is not None:
        raise inngest.RetryAfterError(
            f"{out.entity} chunk {out.chunk_index}: {_error_text(out)} (attempt {out.attempts})",
            timedelta(seconds=out.retry_in),
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
