"""Holding an entity's lease while a worker drives it: shared by every adapter."""

from __future__ import annotations

import asyncio
import contextlib
import time

from statesync._models import Lease
from statesync.errors import LeaseError, StoreError
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
            self._lease = await self._renew_once()

    async def _renew_once(self) -> Lease:
        """Renew, riding out store hiccups for as long as the lease is still valid."""
        while True:
            try:
                return await self._store.renew_lease(self._lease, self._ttl)
            except LeaseError:
                raise
            except StoreError as exc:
                if time.time() + 0.5 >= self._lease.expires_at:
                    raise LeaseError(
                        f"lease could not be renewed before it expired: {exc}"
                    ) from exc
                await asyncio.sleep(0.5)

    async def release(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StoreError):
            await self._task
        # StoreError covers LeaseError: an unreachable store lets the lease expire itself.
        with contextlib.suppress(StoreError):
            await self._store.release_lease(self._lease)
