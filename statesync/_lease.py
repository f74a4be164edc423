"""Holding an entity's lease while a worker drives it: shared by every adapter."""

from __future__ import annotations

import asyncio
import contextlib

from statesync._models import Lease
from statesync.errors import LeaseError
from statesync.store import StateStore


class LeaseKeeper:
    """Holds one entity's lease and renews it in the background while work goes on."""

    def __init__(self, store: StateStore, lease: Lease, ttl: float) -> None:
        self._store = store
        self._lease = lease
        self._ttl = ttl
        self._task = asyncio.create_task(self._renew())

    def current(self) -> Lease:
        if self._task.done() and not self._task.cancelled():
            self._task.result()  # raises the LeaseError that ended renewal
        return self._lease

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            self._lease = await self._store.renew_lease(self._lease, self._ttl)

    async def release(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeaseError):
            await self._task
        with contextlib.suppress(LeaseError):
            await self._store.release_lease(self._lease)
