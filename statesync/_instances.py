"""Recurring jobs: one job id, many *instances*, each a job of its own in the store.

Instance 1 of ``nightly`` is stored as ``nightly``, instance n > 1 as ``nightly#n``, so
the stores need nothing new and every instance keeps its own records, history, leases
and fences; destinations key staging and fences by the instance's
:attr:`~statesync.EntityRecord.destination_job`, which differs per instance too.

:func:`open_instance` is what "run job X" means: the latest instance when it is
unfinished and nobody drives it (resume it), a new one when it finished (complete, failed
or cancelled), and :class:`~statesync.errors.JobBusyError` while a live worker holds it.
Instances are numbered without gaps, so the latest is found with O(log n) lookups.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from attrs import frozen

from statesync.errors import ConfigurationError, ConflictError, JobBusyError, UnknownJobError
from statesync.store import StateStore

SEPARATOR = "#"


@frozen
class Instance:
    """One instance of a job: its number, the id the store keeps it under, and whether
    :func:`open_instance` just created it (``False``: an unfinished one to resume)."""

    job_id: str
    number: int
    store_id: str
    created: bool


def instance_id(job_id: str, number: int) -> str:
    """The store id of instance ``number`` of ``job_id``."""
    if number < 1:
        raise ConfigurationError(f"instance numbers start at 1, got {number}")
    return job_id if number == 1 else f"{job_id}{SEPARATOR}{number}"


def validate_job_id(job_id: str) -> str:
    if not job_id or SEPARATOR in job_id or not job_id.isprintable():
        raise ConfigurationError(
            f"invalid job id {job_id!r}: it must be non-empty, printable and free of "
            f"{SEPARATOR!r} (which numbers a job's instances)"
        )
    return job_id


async def _exists(store: StateStore, store_id: str) -> bool:
    try:
        await store.get_job(store_id)
    except UnknownJobError:
        return False
    return True


async def latest_instance(store: StateStore, job_id: str) -> int:
    """The highest instance number of ``job_id`` in the store; 0 when there is none."""
    if not await _exists(store, job_id):
        return 0
    low, high = 1, 2
    while await _exists(store, instance_id(job_id, high)):
        low, high = high, high * 2
    while high - low > 1:  # low exists, high does not
        mid = (low + high) // 2
        if await _exists(store, instance_id(job_id, mid)):
            low = mid
        else:
            high = mid
    return low


async def resolve_instance(
    store: StateStore, job_id: str, number: int | None = None
) -> tuple[int, str]:
    """``(number, store id)`` of instance ``number`` (default: the latest) of ``job_id``.

    Raises :class:`~statesync.errors.UnknownJobError` when there is no such instance.
    """
    if number is None:
        number = await latest_instance(store, job_id)
        if number == 0:
            raise UnknownJobError(f"no job {job_id!r}")
    store_id = instance_id(job_id, number)
    if not await _exists(store, store_id):
        raise UnknownJobError(f"no instance {number} of job {job_id!r}")
    return number, store_id


Create = Callable[[str], Awaitable[None]]
"""Creates the job under the store id it is given (e.g. :meth:`LocalRunner.create_job`)."""


async def open_instance(store: StateStore, job_id: str, create: Create) -> Instance:
    """Create or pick the instance of ``job_id`` that a new run should drive.

    * no instance yet, or the latest finished: ``create`` the next one;
    * the latest is unfinished and no live worker holds any of its entities: that one
      (``created=False``), to be resumed;
    * a live worker holds one of its entities: :class:`~statesync.errors.JobBusyError`.

    Two callers racing to create the same instance are settled by the store: the loser
    sees the winner's instance.
    """
    from statesync._status import job_status

    for _ in range(3):
        latest = await latest_instance(store, job_id)
        if latest:
            status = await job_status(store, job_id, instance=latest)
            if status.running:
                holders = {
                    e.entity: (e.holder.owner, e.holder.until.timestamp())
                    for e in status.entities
                    if e.holder is not None
                }
                raise JobBusyError(job_id, holders)
            if not status.finished:
                return Instance(job_id, latest, status.store_id, created=False)
        number = latest + 1
        try:
            await create(instance_id(job_id, number))
        except ConflictError:
            continue  # someone created it meanwhile: look again
        return Instance(job_id, number, instance_id(job_id, number), created=True)
    raise JobBusyError(job_id, {})
