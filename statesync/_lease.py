"""Holding an entity's lease while a worker drives it: shared by every adapter.

A lease is short (seconds) and kept alive by a heartbeat (:class:`LeaseKeeper`), so a
worker that dies stops blocking others soon. A successor on the same host does not even
wait that long: the holder records its host and pid, and :func:`take_lease` breaks the
lease of a process that no longer exists (the fencing token the successor then draws is
higher, so anything the dead holder left in flight is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from attrs import frozen

from statesync._models import Lease
from statesync._sqlite_lock import reset_lease_deadline, set_lease_deadline
from statesync.errors import LeaseError, StoreError
from statesync.store import StateStore

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

HOST: Final = socket.gethostname()
"""This host's name, as leases record it."""

_RETRY_PAUSE: Final = 0.5
"""Seconds between renewal attempts while the store hiccups."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, but belongs to someone else
    with contextlib.suppress(OSError, IndexError):
        # "pid (comm) S ...": the state follows the last parenthesis.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def holder_gone(
    lease: Lease, *, host: str = HOST, alive: Callable[[int], bool] = pid_alive
) -> bool:
    """True only when ``lease``'s holder said it runs on ``host`` and its process is gone.

    A holder that said nothing (or runs elsewhere) is never judged dead here: its lease
    simply expires when its heartbeat stops.
    """
    if lease.host != host or lease.pid is None or lease.pid == os.getpid():
        return False
    return not alive(lease.pid)


@frozen
class LeaseAttempt:
    """What :func:`take_lease` found: our lease, or the live holder's; and whom we replaced."""

    lease: Lease | None
    holder: Lease | None = None
    took_over: Lease | None = None


async def take_lease(
    store: StateStore,
    job_id: str,
    entity: str,
    owner: str,
    ttl: float,
    *,
    host: str = HOST,
    pid: int | None = None,
    alive: Callable[[int], bool] = pid_alive,
    min_token: int = 0,
) -> LeaseAttempt:
    """Acquire the entity's lease, breaking it first when its holder's process is dead.

    ``min_token`` is passed on to the store (see :meth:`StateStore.acquire_lease`).
    """
    pid = os.getpid() if pid is None else pid
    took_over: Lease | None = None
    holder: Lease | None = None
    for _ in range(3):  # a race with another successor is settled by the store
        lease = await store.acquire_lease(
            job_id, entity, owner, ttl, host=host, pid=pid, min_token=min_token
        )
        if lease is not None:
            return LeaseAttempt(lease, None, took_over)
        holder = await store.get_lease(job_id, entity)
        if holder is None:
            continue  # it expired in between
        if not holder_gone(holder, host=host, alive=alive):
            break
        await store.release_lease(holder)  # only that token: a live successor is safe
        took_over = holder
    return LeaseAttempt(None, holder, None)


class LeaseKeeper:
    """Holds one entity's lease and renews it every ``ttl / 3`` while work goes on.

    ``clock`` and ``sleep`` are injectable so tests can drive the heartbeat by events.
    While it holds the lease, SQLite lock waits in this task end when the lease would.
    """

    def __init__(
        self,
        store: StateStore,
        lease: Lease,
        ttl: float,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._lease = lease
        self._ttl = ttl
        self._clock = clock
        self._sleep = sleep
        self._task = asyncio.create_task(self._renew())
        self._deadline = set_lease_deadline(lambda: self._lease.expires_at)

    def current(self) -> Lease:
        if self._task.done() and not self._task.cancelled():
            self._task.result()  # raises the LeaseError that ended renewal
        return self._lease

    def seconds_left(self) -> float:
        """Time until the lease expires unless renewed (what a lock wait may take)."""
        return self._lease.expires_at - self._clock()

    async def _renew(self) -> None:
        while True:
            await self._sleep(self._ttl / 3)
            self._lease = await self._renew_once()

    async def _renew_once(self) -> Lease:
        """Renew, riding out store hiccups for as long as the lease is still valid."""
        while True:
            try:
                return await self._store.renew_lease(self._lease, self._ttl)
            except LeaseError:
                raise
            except StoreError as exc:
                if self._clock() + _RETRY_PAUSE >= self._lease.expires_at:
                    raise LeaseError(
                        f"lease could not be renewed before it expired: {exc}"
                    ) from exc
                await self._sleep(_RETRY_PAUSE)

    async def release(self) -> None:
        """Stop renewing and give the lease up, even when cancelled meanwhile.

        The release runs to its end in a task of its own; a cancellation that arrives
        while it runs is re-raised once the lease is released, so a job stopping on a
        fatal error never leaves a sibling's lease held.
        """
        self._task.cancel()
        reset_lease_deadline(self._deadline)
        giving_up = asyncio.ensure_future(self._give_up())
        cancelled = False
        while not giving_up.done():
            try:
                await asyncio.shield(giving_up)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _give_up(self) -> None:
        await asyncio.wait([self._task])
        if not self._task.cancelled():
            self._task.exception()  # retrieved: a lost lease was reported by current()
        # StoreError covers LeaseError; an unreachable (or hung) store lets the lease
        # expire by itself, which it does within one TTL.
        with contextlib.suppress(StoreError, TimeoutError):
            await asyncio.wait_for(self._store.release_lease(self._lease), max(self._ttl, 1.0))
