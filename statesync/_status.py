"""``job_status``: one typed answer to "how is this job doing?", for services and the CLI.

The answer is built from the store alone (records, leases), so any process can ask. It
tells the truth about liveness: an unfinished entity nobody holds a valid lease on is
``stalled`` (since its last write), never given an ETA; the rate counts only the time a
worker was driving the entity. ``statesync status --json`` prints :meth:`JobStatus.to_json`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from statesync._lease import holder_gone
from statesync._models import EntityRecord, ErrorInfo, JobSpec, Lease, SyncMode, SyncState
from statesync.store import StateStore


class Liveness(enum.StrEnum):
    """Whether someone is driving an entity right now."""

    RUNNING = "running"
    """A worker holds a valid lease on it."""
    STALLED = "stalled"
    """Unfinished, started, and no live worker holds it: it waits for a resume."""
    WAITING = "waiting"
    """Never started (pending) and nobody holds it."""
    FINISHED = "finished"
    """Complete, failed or cancelled: nothing more will happen without an operator."""


class Outcome(enum.StrEnum):
    """How a run left an entity (:attr:`EntityResult.outcome`)."""

    COMPLETE = "complete"
    FAILED = "failed"
    """Gave up on an error: see the result's ``error_kind``."""
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """Stopped before the end (a stop request, a lost lease); resume goes on."""
    BUSY = "busy"
    """Another live worker holds it: see the result's ``holder``."""
    STALLED = "stalled"
    """Unfinished and nobody drives it (its worker died): resume it."""


@frozen
class Holder:
    """Who holds an entity's lease, and until when (unless renewed)."""

    owner: str
    until: datetime
    host: str | None = None
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "until": self.until.isoformat(),
            "host": self.host,
            "pid": self.pid,
        }


@frozen
class EntityStatus:
    """One entity of a job, as :func:`job_status` sees it."""

    entity: str
    state: SyncState
    liveness: Liveness
    chunk: int
    records: int
    total: int | None
    api_calls: int
    attempts: int
    records_per_s: float | None
    eta_s: float | None
    last_error: ErrorInfo | None
    holder: Holder | None
    stalled_since: datetime | None
    state_since: datetime | None
    updated_at: datetime | None

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        error = self.last_error
        return {
            "entity": self.entity,
            "state": self.state.value,
            "liveness": self.liveness.value,
            "chunk": self.chunk,
            "records": self.records,
            "total": self.total,
            "api_calls": self.api_calls,
            "attempts": self.attempts,
            "records_per_s": self.records_per_s,
            "eta_s": self.eta_s,
            "time_in_state": _ago(self.state_since, now or datetime.now(UTC)),
            "state_since": _iso(self.state_since),
            "updated_at": _iso(self.updated_at),
            "stalled_since": _iso(self.stalled_since),
            "holder": self.holder.to_json() if self.holder else None,
            "last_error": error.message if error else None,
            "last_error_kind": error.kind if error else None,
            "last_error_exception": error.exception if error else None,
            "last_error_frame": error.frame if error else None,
        }


@frozen
class JobStatus:
    """A job (one instance of it) and its entities."""

    job_id: str
    """The job id as given (the same for every instance of a recurring job)."""
    instance: int
    store_id: str
    """The id the store keeps this instance under (``job_id`` for the first)."""
    connector: str
    mode: SyncMode
    created_at: datetime | None
    entities: tuple[EntityStatus, ...]

    @property
    def finished(self) -> bool:
        return all(e.liveness is Liveness.FINISHED for e in self.entities)

    @property
    def running(self) -> bool:
        return any(e.liveness is Liveness.RUNNING for e in self.entities)

    def entity(self, name: str) -> EntityStatus:
        for status in self.entities:
            if status.entity == name:
                return status
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "job_id": self.job_id,
            "instance": self.instance,
            "store_id": self.store_id,
            "connector": self.connector,
            "mode": self.mode.value,
            "created_at": _iso(self.created_at),
            "finished": self.finished,
            "entities": [e.to_json(now) for e in self.entities],
        }


async def job_status(store: StateStore, job_id: str, *, instance: int | None = None) -> JobStatus:
    """The status of ``job_id``'s latest instance (or of ``instance``).

    Raises :class:`~statesync.errors.UnknownJobError` when there is no such job.
    """
    from statesync._instances import resolve_instance

    number, store_id = await resolve_instance(store, job_id, instance)
    spec = await store.get_job(store_id)
    records = await store.list_entities(store_id)
    leases = [await store.get_lease(store_id, r.entity) for r in records]
    return build_status(job_id, number, spec, records, leases)


def build_status(
    job_id: str,
    instance: int,
    spec: JobSpec,
    records: Sequence[EntityRecord],
    leases: Sequence[Lease | None],
) -> JobStatus:
    now = datetime.now(UTC)
    entities = tuple(entity_status(r, lease, now) for r, lease in zip(records, leases, strict=True))
    return JobStatus(
        job_id, instance, spec.job_id, spec.connector, spec.mode, spec.created_at, entities
    )


def entity_status(rec: EntityRecord, lease: Lease | None, now: datetime) -> EntityStatus:
    live = lease if lease is not None and not holder_gone(lease) else None
    liveness = _liveness(rec, live)
    rate = _rate(rec, live, now)
    eta = None
    if liveness is Liveness.RUNNING and rate and rec.total_hint and rec.total_hint > rec.records:
        eta = round((rec.total_hint - rec.records) / rate, 1)
    return EntityStatus(
        entity=rec.entity,
        state=rec.state,
        liveness=liveness,
        chunk=rec.chunk_index,
        records=rec.records,
        total=rec.total_hint,
        api_calls=rec.api_calls,
        attempts=rec.attempts,
        records_per_s=round(rate, 1) if rate is not None else None,
        eta_s=eta,
        # A finished entity carries no current error, except the one it failed with.
        last_error=rec.last_error if rec.state is not SyncState.COMPLETE else None,
        holder=_holder(lease),
        stalled_since=rec.updated_at if liveness is Liveness.STALLED else None,
        state_since=rec.state_since,
        updated_at=rec.updated_at,
    )


def _liveness(rec: EntityRecord, live: Lease | None) -> Liveness:
    if rec.state in (SyncState.COMPLETE, SyncState.FAILED, SyncState.CANCELLED):
        return Liveness.FINISHED
    if live is not None:
        return Liveness.RUNNING
    return Liveness.WAITING if rec.state is SyncState.PENDING else Liveness.STALLED


def _rate(rec: EntityRecord, live: Lease | None, now: datetime) -> float | None:
    """Records per second over the time someone drove the entity."""
    driven = rec.driven_seconds
    if live is not None and rec.updated_at is not None:
        driven += max(0.0, (now - rec.updated_at).total_seconds())
    if driven <= 0 or rec.records == 0:
        return None
    return rec.records / driven


def _holder(lease: Lease | None) -> Holder | None:
    if lease is None:
        return None
    return Holder(lease.owner, datetime.fromtimestamp(lease.expires_at, UTC), lease.host, lease.pid)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = (now - when).total_seconds()
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"
