"""The state-store plug-in point: where entity records, their history and leases live.

Implementations: :mod:`statesync.stores.memory` (tests, embedding),
:mod:`statesync.stores.sqlite` (the embedded, durable default) and
:mod:`statesync.stores.redis` (production; ``statesync[redis]``). Every one passes the
same contract suite (``tests/test_store_contract.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from statesync._models import EntityRecord, JobSpec, Lease, TransitionRecord


@runtime_checkable
class StateStore(Protocol):
    """Persists jobs, entity records (machine state + ``FetchState``) and leases.

    Writes are compare-and-set: :meth:`save` stores ``record`` only when the stored
    version equals ``record.version - 1`` and, when ``lease`` is given, only while that
    lease's fencing token is the entity's current one. Otherwise it raises
    :class:`~statesync.errors.ConflictError` or :class:`~statesync.errors.LeaseError`
    and changes nothing. The record and its transition are written in one atomic step.
    """

    async def create_job(self, job: JobSpec, records: Sequence[EntityRecord]) -> None:
        """Store a new job and its entities' first records (version 1).

        Raises :class:`~statesync.errors.ConflictError` if the job already exists.
        """
        ...

    async def get_job(self, job_id: str) -> JobSpec:
        """Raises :class:`~statesync.errors.UnknownJobError` if there is none."""
        ...

    async def list_jobs(self, limit: int = 100) -> Sequence[JobSpec]:
        """The most recent jobs first."""
        ...

    async def get_entity(self, job_id: str, entity: str) -> EntityRecord:
        """Raises :class:`~statesync.errors.UnknownJobError` if there is none."""
        ...

    async def list_entities(self, job_id: str) -> Sequence[EntityRecord]: ...

    async def save(
        self,
        record: EntityRecord,
        *,
        transition: TransitionRecord | None = None,
        lease: Lease | None = None,
    ) -> None:
        """Atomically store ``record`` (whose version must be stored version + 1)."""
        ...

    async def history(self, job_id: str, entity: str) -> Sequence[TransitionRecord]:
        """Transitions oldest first (capped: the oldest may have been dropped)."""
        ...

    async def acquire_lease(
        self,
        job_id: str,
        entity: str,
        owner: str,
        ttl: float,
        *,
        host: str | None = None,
        pid: int | None = None,
        min_token: int = 0,
    ) -> Lease | None:
        """A new lease with a higher fencing token, or ``None`` if another owner holds one.

        The same owner re-acquiring gets a fresh lease (and token). ``host`` and ``pid``
        are recorded with it and returned by :meth:`get_lease`. The token is at least
        ``min_token``: a store restored from an old snapshot has an old fence counter,
        and the destination refuses tokens below the highest it has seen.
        """
        ...

    async def get_lease(self, job_id: str, entity: str) -> Lease | None:
        """The entity's current, unexpired lease (holder, token, expiry), or ``None``."""
        ...

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend ``lease``; raises :class:`~statesync.errors.LeaseError` if it was lost."""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up, if its token is still the current one.

        Also how a successor breaks the lease of a holder it knows is dead (a lease read
        by :meth:`get_lease`): the next acquire then draws a higher token.
        """
        ...

    async def finish_job(self, job_id: str) -> None:
        """Mark the job finished (stores with expiry start its clock now)."""
        ...

    async def aclose(self) -> None: ...
