"""An in-memory state store, for tests and for embedding where nothing must persist."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence

import attrs

from statesync._models import EntityRecord, JobSpec, Lease, TransitionRecord
from statesync.errors import ConflictError, LeaseError, UnknownJobError

_Key = tuple[str, str]


class MemoryStateStore:
    """Keeps everything in dicts; same semantics as the durable stores, no durability."""

    def __init__(self, *, history_limit: int = 1000) -> None:
        self._jobs: dict[str, JobSpec] = {}
        self._records: dict[_Key, EntityRecord] = {}
        self._history: dict[_Key, deque[TransitionRecord]] = {}
        self._leases: dict[_Key, Lease] = {}
        self._fence: dict[_Key, int] = {}
        self._finished: set[str] = set()
        self._history_limit = history_limit
        self._lock = asyncio.Lock()

    async def create_job(self, job: JobSpec, records: Sequence[EntityRecord]) -> None:
        async with self._lock:
            if job.job_id in self._jobs:
                raise ConflictError(job.job_id, "*", 0, 1)
            self._jobs[job.job_id] = job
            for rec in records:
                key = (job.job_id, rec.entity)
                self._records[key] = attrs.evolve(rec, version=1)
                self._history[key] = deque(maxlen=self._history_limit)

    async def get_job(self, job_id: str) -> JobSpec:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise UnknownJobError(f"no job {job_id!r}") from None

    async def list_jobs(self, limit: int = 100) -> Sequence[JobSpec]:
        return list(reversed(self._jobs.values()))[:limit]

    async def get_entity(self, job_id: str, entity: str) -> EntityRecord:
        try:
            return self._records[(job_id, entity)]
        except KeyError:
            raise UnknownJobError(f"no entity {entity!r} in job {job_id!r}") from None

    async def list_entities(self, job_id: str) -> Sequence[EntityRecord]:
        await self.get_job(job_id)
        return [r for (j, _), r in self._records.items() if j == job_id]

    async def save(
        self,
        record: EntityRecord,
        *,
        transition: TransitionRecord | None = None,
        lease: Lease | None = None,
    ) -> None:
        key = (record.job_id, record.entity)
        async with self._lock:
            current = self._records.get(key)
            if current is None:
                raise UnknownJobError(f"no entity {record.entity!r} in job {record.job_id!r}")
            if lease is not None:
                self._check_lease(key, lease)
            if current.version != record.version - 1:
                raise ConflictError(
                    record.job_id, record.entity, record.version - 1, current.version
                )
            self._records[key] = record
            if transition is not None:
                self._history[key].append(transition)

    def _check_lease(self, key: _Key, lease: Lease) -> None:
        held = self._leases.get(key)
        if held is None or held.token != lease.token or held.expires_at < time.time():
            raise LeaseError(f"lease on {key[1]!r} in job {key[0]!r} was lost")

    async def history(self, job_id: str, entity: str) -> Sequence[TransitionRecord]:
        return list(self._history.get((job_id, entity), ()))

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
        key = (job_id, entity)
        async with self._lock:
            held = self._leases.get(key)
            if held is not None and held.owner != owner and held.expires_at >= time.time():
                return None
            token = max(self._fence.get(key, 0) + 1, min_token)
            self._fence[key] = token
            lease = Lease(job_id, entity, owner, token, time.time() + ttl, host, pid)
            self._leases[key] = lease
            return lease

    async def get_lease(self, job_id: str, entity: str) -> Lease | None:
        held = self._leases.get((job_id, entity))
        return held if held is not None and held.expires_at >= time.time() else None

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        key = (lease.job_id, lease.entity)
        async with self._lock:
            self._check_lease(key, lease)
            renewed = attrs.evolve(lease, expires_at=time.time() + ttl)
            self._leases[key] = renewed
            return renewed

    async def release_lease(self, lease: Lease) -> None:
        key = (lease.job_id, lease.entity)
        async with self._lock:
            held = self._leases.get(key)
            if held is not None and held.token == lease.token:
                del self._leases[key]

    async def finish_job(self, job_id: str) -> None:
        await self.get_job(job_id)
        self._finished.add(job_id)

    async def aclose(self) -> None:
        return None
