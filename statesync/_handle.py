"""A handle on one running job, for services: wait for it, stop it, cancel it, ask how it is.

``handle.stop()`` stops this job only (after the current page's checkpoint); the runner's
other jobs go on. ``await handle.cancel()`` stops it, waits for its workers to let go,
then cancels its unfinished entities and drops what they staged.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from statesync._cancel import CancelResult, cancel_job
from statesync._status import JobStatus, job_status
from statesync.errors import StatesyncError

if TYPE_CHECKING:
    from statesync._instances import Instance
    from statesync.adapters.local import JobResult, LocalRunner


class JobHandle:
    """One instance of a job, run in a task of a :class:`LocalRunner`."""

    def __init__(
        self, runner: LocalRunner, instance: Instance, task: asyncio.Task[JobResult]
    ) -> None:
        self._runner = runner
        self.instance = instance
        self._task = task

    @property
    def job_id(self) -> str:
        return self.instance.job_id

    @property
    def store_id(self) -> str:
        """The id the store keeps this instance under."""
        return self.instance.store_id

    @property
    def done(self) -> bool:
        return self._task.done()

    async def wait(self) -> JobResult:
        """The run's result once it ends (it raises what stopped the run, e.g. a
        :class:`~statesync.errors.StoreError` when the store went away)."""
        return await asyncio.shield(self._task)

    def stop(self) -> None:
        """Stop this job after its current checkpoints; :meth:`wait` then returns."""
        self._runner.request_stop(self.store_id)

    async def cancel(self) -> CancelResult:
        """Stop the job, then cancel its unfinished entities for good."""
        self.stop()
        with contextlib.suppress(StatesyncError):
            await self.wait()
        return await cancel_job(
            self._runner.store,
            self._runner.destination,
            self.job_id,
            instance=self.instance.number,
        )

    async def status(self) -> JobStatus:
        return await job_status(self._runner.store, self.job_id, instance=self.instance.number)

    def __repr__(self) -> str:
        return f"JobHandle({self.job_id!r}, instance={self.instance.number}, done={self.done})"
