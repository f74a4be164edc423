"""RedisStateStore specifics: key layout, expiry, tolerance, failures, no keyspace scans."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

import statesync.stores._redis_keys as keys_module
import statesync.stores.redis as redis_module
from statesync.errors import MissingExtraError, StoreError
from statesync.stores._redis_keys import Keys
from statesync.stores.redis import RedisStateStore
from support.stores import make_job, make_records, new_job, transition

RedisServer = Any  # the conftest fixture's server class; only its url/port/stop are used


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> AsyncIterator[RedisStateStore]:
    store = RedisStateStore.from_url(redis_url, prefix=key_prefix, finished_ttl=3600)
    yield store
    keys = [key async for key in store._client.scan_iter(match=f"{key_prefix}:*")]
    if keys:
        await store._client.delete(*keys)
    await store.aclose()


async def _dump(client: aioredis.Redis) -> dict[str, Any]:
    """Every key of a private server with its value (the client does not decode)."""
    out: dict[str, Any] = {}
    async for raw in client.scan_iter():
        key = raw.decode()
        kind = await client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "list":
            out[key] = await client.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1)
        else:
            out[key] = await client.get(key)
    return out


async def test_keys_start_with_the_prefix_and_hold_no_secrets(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    # Set after start: the fixture's readiness probe cannot authenticate.
    async with aioredis.Redis.from_url(server.url) as admin:
        await admin.config_set("requirepass", "s3cret-pw")
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    store = RedisStateStore.from_url(url, prefix="acme")
    await new_job(store)
    record = await store.get_entity("job-1", "customers")
    lease = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    await store.save(attrs.evolve(record, version=2), transition=transition(0), lease=lease)
    dump = await _dump(store._client)
    await store.aclose()
    assert set(dump) == {
        "acme:jobs",
        "acme:job:{job-1}:spec",
        "acme:job:{job-1}:entity:customers",
        "acme:job:{job-1}:entity:invoices",
        "acme:job:{job-1}:history:customers",
        "acme:job:{job-1}:lease:customers",
        "acme:job:{job-1}:holder:customers",
        "acme:job:{job-1}:fence:customers",
    }
    assert "s3cret-pw" not in repr(dump)


def test_a_jobs_keys_share_one_cluster_slot() -> None:
    keys = Keys("p")
    job_id = "weird:{job}%"
    names = [keys.job(job_id)]
    for entity in ("customers", "a:b", "{x}"):
        names += [keys.entity(job_id, entity), keys.history(job_id, entity)]
        names += [keys.lease(job_id, entity), keys.fence(job_id, entity)]
        names += [keys.lease_holder(job_id, entity)]
    assert len({key_slot(n.encode()) for n in names}) == 1
    assert len(set(names)) == len(names)
    assert keys.entity("j", "a:history:b") != keys.history("j", "a:entity:b")


def test_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="brace"):
        Keys("a{b}")


async def test_finish_job_sets_ttls(store: RedisStateStore) -> None:
    await new_job(store)
    record = await store.get_entity("job-1", "customers")
    await store.save(attrs.evolve(record, version=2), transition=transition(0))
    lease = await store.acquire_lease("job-1", "customers", "worker-a", ttl=30)
    assert lease is not None
    await store.finish_job("job-1")
    keys, client = store.keys, store._client
    durable = [keys.job("job-1")]
    durable += [keys.entity("job-1", e) for e in ("customers", "invoices")]
    durable += [keys.history("job-1", "customers"), keys.fence("job-1", "customers")]
    for key in durable:
        assert 3_590_000 < await client.pttl(key) <= 3_600_000, key
    # The lease keeps its own, shorter expiry: finishing must not extend it.
    assert 0 < await client.pttl(keys.lease("job-1", "customers")) <= 30_000


async def test_expired_jobs_leave_list_jobs(redis_url: str, key_prefix: str) -> None:
    store = RedisStateStore.from_url(redis_url, prefix=key_prefix, finished_ttl=0.2)
    try:
        await new_job(store, "old")
        await new_job(store, "new")
        await store.finish_job("old")
        deadline = time.monotonic() + 10  # Redis expires it after 0.2 s; poll, do not guess
        while [j.job_id for j in await store.list_jobs()] != ["new"]:
            assert time.monotonic() < deadline, "the finished job never left list_jobs"
            await asyncio.sleep(0.02)
        assert await store._client.zscore(store.keys.jobs_index(), "old") is None
        await new_job(store, "old")  # the id can be reused once expired
        assert [j.job_id for j in await store.list_jobs()] == ["old", "new"]
        assert await store.history("old", "customers") == []
    finally:
        await store._client.delete(*[k async for k in store._client.scan_iter(f"{key_prefix}:*")])
        await store.aclose()


async def _hget(store: RedisStateStore, key: str, field: str) -> bytes:
    raw = await store._client.hget(key, field)
    assert isinstance(raw, bytes)
    return raw


async def test_unknown_json_fields_are_tolerated(store: RedisStateStore) -> None:
    job = await new_job(store)
    key = store.keys.entity("job-1", "customers")
    data = json.loads(await _hget(store, key, "data"))
    data["added_in_a_later_release"] = {"nested": True}
    data["fetch_state"]["also_new"] = 1
    await store._client.hset(key, "data", json.dumps(data))
    spec = json.loads(await _hget(store, store.keys.job("job-1"), "spec"))
    await store._client.hset(store.keys.job("job-1"), "spec", json.dumps({**spec, "x": 1}))
    expected = attrs.evolve(make_records(job)[0], version=1)
    assert await store.get_entity("job-1", "customers") == expected
    assert await store.get_job("job-1") == job


async def test_unreadable_record_is_a_store_error(store: RedisStateStore) -> None:
    await new_job(store)
    await store._client.hset(store.keys.entity("job-1", "customers"), "data", "{not json")
    with pytest.raises(StoreError, match="EntityRecord"):
        await store.get_entity("job-1", "customers")


async def test_redis_down_is_a_store_error(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()
    store = RedisStateStore.from_url(server.url)
    await new_job(store)
    server.stop()
    with pytest.raises(StoreError, match="redis"):
        await store.get_job("job-1")
    with pytest.raises(StoreError, match="redis"):
        await store.save(make_records(make_job())[0])
    await store.aclose()


async def test_an_injected_client_is_not_closed(redis_url: str, key_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStateStore(client, prefix=key_prefix)
    await store.aclose()
    assert await client.ping()
    await client.aclose()


async def test_never_scans_the_keyspace(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()
    store = RedisStateStore.from_url(server.url, finished_ttl=0.1)
    seen: list[str] = []
    done = asyncio.Event()
    async with aioredis.Redis.from_url(server.url).monitor() as monitor:

        async def record() -> None:
            async for info in monitor.listen():
                seen.append(info["command"].split(" ", 1)[0].upper())
                if info["command"].startswith("SET sentinel"):
                    done.set()

        task = asyncio.create_task(record())
        await _exercise(store)
        await store._client.set("sentinel", 1)  # the last command: all before it were seen
        await asyncio.wait_for(done.wait(), 10)
        task.cancel()
    await store.aclose()
    assert {"EVALSHA", "HGET", "ZREVRANGE"} <= set(seen)
    assert not {"KEYS", "SCAN"} & set(seen)


async def _exercise(store: RedisStateStore) -> None:
    """Every public operation once, including listing an expired job."""
    await new_job(store, "a")
    await new_job(store, "b")
    record = await store.get_entity("a", "customers")
    lease = await store.acquire_lease("a", "customers", "w", ttl=5)
    assert lease is not None
    await store.save(attrs.evolve(record, version=2), transition=transition(0), lease=lease)
    await store.renew_lease(lease, ttl=5)
    await store.release_lease(lease)
    await store.history("a", "customers")
    await store.list_entities("a")
    await store.finish_job("a")
    await asyncio.sleep(0.2)
    await store.list_jobs()


def test_source_has_no_keys_or_scan() -> None:
    source = inspect.getsource(redis_module) + inspect.getsource(keys_module)
    assert not re.search(r"\bscan(_iter)?\s*\(|\.keys\s*\(|'(KEYS|SCAN)'", source, re.I)


def test_missing_extra_is_explained() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from statesync.errors import MissingExtraError\n"
        # The module imports without the extra; using it names the extra.
        "from statesync.stores.redis import RedisStateStore\n"
        "try:\n    RedisStateStore.from_url('redis://127.0.0.1:1')\n"
        "except MissingExtraError as exc:\n    print('missing:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert "pip install 'statesync[redis]'" in out.stdout
    assert issubclass(MissingExtraError, ImportError)
