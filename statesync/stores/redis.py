"""The production state store: Redis (``pip install 'statesync[redis]'``).

Each compare-and-set is one Lua script, so a record, its version check, its lease
check and its history line are written atomically. A job's keys share one hash tag
(see :mod:`statesync.stores._redis_keys`), which keeps the scripts valid on a cluster.
The code never enumerates the keyspace (no KEYS, no SCAN): a job's keys are derived
from its entity names, and ``list_jobs`` reads a sorted-set index.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Final, TypeVar

import attrs

from statesync._converter import dumps, loads
from statesync._extras import Extra
from statesync._models import EntityRecord, JobSpec, Lease, TransitionRecord
from statesync.errors import (
    ConflictError,
    LeaseError,
    UnknownJobError,
)
from statesync.stores._redis_keys import Keys

_REDIS = Extra("RedisStateStore", "redis", "redis")
with _REDIS.importing():
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from statesync.stores._redis_errors import map_redis_error  # imports redis

T = TypeVar("T")

# KEYS: entity hash, history list, lease.
# ARGV: new version, record JSON, transition JSON or "", history limit, lease token or "".
_SAVE: Final = """
local current = redis.call('HGET', KEYS[1], 'v')
if not current then return {'unknown'} end
if ARGV[5] ~= '' then
  local held = redis.call('GET', KEYS[3])
  if not held or string.match(held, '^(%d+):') ~= ARGV[5] then return {'lease'} end
end
if tonumber(current) ~= tonumber(ARGV[1]) - 1 then return {'conflict', current} end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'data', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
  -- a list created after finish_job must expire with the record it belongs to
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return {'ok'}
"""

# KEYS: job hash, then n entity hashes, n history lists, n fence counters.
# ARGV: JobSpec JSON, entity names JSON, then n record JSONs.
_CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[1], 'entities', ARGV[2])
local n = #ARGV - 2
for i = 1, n do
  -- leftovers of an expired job with the same id must not leak into the new one
  redis.call('DEL', KEYS[1 + i], KEYS[1 + n + i])
  redis.call('HSET', KEYS[1 + i], 'v', 1, 'data', ARGV[2 + i])
  -- the fence is kept (tokens must never repeat) but must not expire mid-job
  redis.call('PERSIST', KEYS[1 + 2 * n + i])
end
return 1
"""

# KEYS: lease, fence, job hash, lease holder. ARGV: owner, ttl in ms, holder JSON,
# lowest token. Returns the token or nil.
_ACQUIRE: Final = """
local held = redis.call('GET', KEYS[1])
if held and string.match(held, '^%d+:(.*)$') ~= ARGV[1] then return false end
local token = redis.call('INCR', KEYS[2])
if token < tonumber(ARGV[4]) then
  token = tonumber(ARGV[4])
  redis.call('SET', KEYS[2], token, 'KEEPTTL')
end
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[2])
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return token
"""

# KEYS: lease, lease holder. ARGV: token, ttl in ms. Returns 1 when renewed.
_RENEW: Final = """
local held = redis.call('GET', KEYS[1])
if not held or string.match(held, '^(%d+):') ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: lease, lease holder. ARGV: token.
_RELEASE: Final = """
local held = redis.call('GET', KEYS[1])
if held and string.match(held, '^(%d+):') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
"""

# KEYS: lease, lease holder. Returns nil, or {"token:owner", ms left, holder JSON or false}.
_PEEK: Final = """
local held = redis.call('GET', KEYS[1])
if not held then return false end
return {held, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2])}
"""


def _text(value: bytes | str) -> str:
    """The client may or may not decode responses; accept both."""
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStateStore:
    """A :class:`~statesync.store.StateStore` on Redis (redis.asyncio).

    ``client`` is injected (and not closed by :meth:`aclose`); :meth:`from_url` builds
    one the store owns. ``finished_ttl`` is how long a finished job's keys are kept.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "statesync",
        history_limit: int = 1000,
        finished_ttl: float = 7 * 86400,
    ) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, got {history_limit}")
        _REDIS.require()
        self._client = client
        self._keys = Keys(prefix)
        self._history_limit = history_limit
        self._finished_ttl = finished_ttl
        self._owns_client = False
        self._save = client.register_script(_SAVE)
        self._create = client.register_script(_CREATE)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._peek = client.register_script(_PEEK)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "statesync",
        history_limit: int = 1000,
        finished_ttl: float = 7 * 86400,
    ) -> RedisStateStore:
        """A store with its own client for ``url`` (closed by :meth:`aclose`)."""
        _REDIS.require()
        client = aioredis.Redis.from_url(url)
        store = cls(client, prefix=prefix, history_limit=history_limit, finished_ttl=finished_ttl)
        store._owns_client = True
        return store

    @property
    def keys(self) -> Keys:
        """The key names this store uses (for operators and tests)."""
        return self._keys

    async def _call(self, pending: Awaitable[T]) -> T:
        """Await a Redis call, turning Redis errors into :class:`StoreError`."""
        try:
            return await pending
        except RedisError as exc:
            raise map_redis_error(exc) from exc

    async def create_job(self, job: JobSpec, records: Sequence[EntityRecord]) -> None:
        names = [rec.entity for rec in records]
        keys = [self._keys.job(job.job_id)]
        keys += [self._keys.entity(job.job_id, n) for n in names]
        keys += [self._keys.history(job.job_id, n) for n in names]
        keys += [self._keys.fence(job.job_id, n) for n in names]
        args = [dumps(job), json.dumps(names)]
        args += [dumps(attrs.evolve(rec, version=1)) for rec in records]
        created = await self._call(self._create(keys=keys, args=args))
        if not created:
            raise ConflictError(job.job_id, "*", 0, 1)
        # The index lives in another slot, so it cannot join the script; a crash in
        # between leaves a job that works but is missing from list_jobs.
        await self._call(self._client.zadd(self._keys.jobs_index(), {job.job_id: time.time()}))

    async def get_job(self, job_id: str) -> JobSpec:
        raw = await self._call(self._client.hget(self._keys.job(job_id), "spec"))
        if raw is None:
            raise UnknownJobError(f"no job {job_id!r}")
        return loads(raw, JobSpec)

    async def list_jobs(self, limit: int = 100) -> Sequence[JobSpec]:
        if limit <= 0:
            return []  # ZREVRANGE 0 -1 would mean "all of them"
        index = self._keys.jobs_index()
        jobs: list[JobSpec] = []
        expired: list[str] = []
        start = 0
        while len(jobs) < limit:
            ids: list[Any] = await self._call(
                self._client.zrevrange(index, start, start + limit - 1)
            )
            if not ids:
                break
            start += len(ids)
            for job_id, raw in zip(ids, await self._specs([_text(i) for i in ids]), strict=True):
                if raw is None:
                    expired.append(_text(job_id))
                else:
                    jobs.append(loads(raw, JobSpec))
        if expired:
            # Finished jobs expire on their own; their index entries are dropped lazily.
            await self._call(self._client.zrem(index, *expired))
        return jobs[:limit]

    async def _specs(self, job_ids: Sequence[str]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self._keys.job(job_id), "spec")
        return await self._call(pipe.execute())

    async def get_entity(self, job_id: str, entity: str) -> EntityRecord:
        raw = await self._call(self._client.hget(self._keys.entity(job_id, entity), "data"))
        if raw is None:
            raise UnknownJobError(f"no entity {entity!r} in job {job_id!r}")
        return loads(raw, EntityRecord)

    async def list_entities(self, job_id: str) -> Sequence[EntityRecord]:
        names = await self._entity_names(job_id)
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._keys.entity(job_id, name), "data")
        raws: list[Any] = await self._call(pipe.execute())
        return [loads(raw, EntityRecord) for raw in raws if raw is not None]

    async def _entity_names(self, job_id: str) -> list[str]:
        raw = await self._call(self._client.hget(self._keys.job(job_id), "entities"))
        if raw is None:
            raise UnknownJobError(f"no job {job_id!r}")
        names: list[str] = json.loads(raw)
        return names

    async def save(
        self,
        record: EntityRecord,
        *,
        transition: TransitionRecord | None = None,
        lease: Lease | None = None,
    ) -> None:
        job_id, entity = record.job_id, record.entity
        keys = [
            self._keys.entity(job_id, entity),
            self._keys.history(job_id, entity),
            self._keys.lease(job_id, entity),
        ]
        args = [
            str(record.version),
            dumps(record),
            "" if transition is None else dumps(transition),
            str(self._history_limit),
            "" if lease is None else str(lease.token),
        ]
        reply = await self._call(self._save(keys=keys, args=args))
        self._raise_for_save(record, [_text(part) for part in reply])

    @staticmethod
    def _raise_for_save(record: EntityRecord, reply: list[str]) -> None:
        status = reply[0]
        if status == "unknown":
            raise UnknownJobError(f"no entity {record.entity!r} in job {record.job_id!r}")
        if status == "lease":
            raise LeaseError(f"lease on {record.entity!r} in job {record.job_id!r} was lost")
        if status == "conflict":
            actual = int(reply[1])
            raise ConflictError(record.job_id, record.entity, record.version - 1, actual)

    async def history(self, job_id: str, entity: str) -> Sequence[TransitionRecord]:
        raws = await self._call(self._client.lrange(self._keys.history(job_id, entity), 0, -1))
        return [loads(raw, TransitionRecord) for raw in raws]

    def _lease_keys(self, job_id: str, entity: str) -> list[str]:
        return [self._keys.lease(job_id, entity), self._keys.lease_holder(job_id, entity)]

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
        # Taken before the call, so the lease we report never outlives the real one.
        expires_at = time.time() + ttl
        keys = [
            self._keys.lease(job_id, entity),
            self._keys.fence(job_id, entity),
            self._keys.job(job_id),
            self._keys.lease_holder(job_id, entity),
        ]
        holder = json.dumps({"host": host, "pid": pid})
        args: list[str | int] = [owner, _ms(ttl), holder, min_token]
        token = await self._call(self._acquire(keys=keys, args=args))
        if token is None:
            return None
        return Lease(job_id, entity, owner, int(token), expires_at, host, pid)

    async def get_lease(self, job_id: str, entity: str) -> Lease | None:
        reply = await self._call(self._peek(keys=self._lease_keys(job_id, entity)))
        if not reply:
            return None
        held, left_ms, holder = _text(reply[0]), int(reply[1]), reply[2]
        token, _, owner = held.partition(":")
        info = json.loads(_text(holder)) if holder else {}
        expires_at = time.time() + max(left_ms, 0) / 1000
        host, pid = info.get("host"), info.get("pid")
        return Lease(job_id, entity, owner, int(token), expires_at, host, pid)

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        expires_at = time.time() + ttl
        keys = self._lease_keys(lease.job_id, lease.entity)
        renewed = await self._call(self._renew(keys=keys, args=[str(lease.token), _ms(ttl)]))
        if not renewed:
            raise LeaseError(f"lease on {lease.entity!r} in job {lease.job_id!r} was lost")
        return attrs.evolve(lease, expires_at=expires_at)

    async def release_lease(self, lease: Lease) -> None:
        keys = self._lease_keys(lease.job_id, lease.entity)
        await self._call(self._release(keys=keys, args=[str(lease.token)]))

    async def finish_job(self, job_id: str) -> None:
        """Start the ``finished_ttl`` clock on every key of the job (leases expire alone)."""
        spec = await self.get_job(job_id)
        names = dict.fromkeys([*await self._entity_names(job_id), *spec.entities])
        job_key = self._keys.job(job_id)
        ttl_ms = _ms(self._finished_ttl)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(job_key, "finished_at", str(time.time()))
        pipe.pexpire(job_key, ttl_ms)
        for name in names:
            for key in self._keys.durable_keys(job_id, name):
                pipe.pexpire(key, ttl_ms)
        await self._call(pipe.execute())

    async def aclose(self) -> None:
        if self._owns_client:
            await self._call(self._client.aclose())
