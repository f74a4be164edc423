"""Cancelling a job, or some of its entities, for good: the public cancel.

Each entity is cancelled under its own lease (so a live worker is never cut off
mid-write) and what its instance staged in the destination is dropped; the live tables
are untouched. The destination is the job's own namespace of ``destination``.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

from statesync._chunk import apply_trigger
from statesync._instances import resolve_instance
from statesync._lease import take_lease
from statesync._models import EntityRecord
from statesync._namespace import job_namespace, namespaced
from statesync.destination import Destination
from statesync.errors import UnknownEntityError
from statesync.store import StateStore

CANCEL_OWNER = "statesync-cancel"
_CANCEL_TTL = 30.0


@frozen
class CancelResult:
    """Which entities are now cancelled, which were already finished, which are busy."""

    job_id: str
    instance: int
    cancelled: tuple[str, ...]
    already_final: tuple[str, ...]
    busy: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.busy


async def cancel_job(
    store: StateStore,
    destination: Destination,
    job_id: str,
    *,
    entities: Sequence[str] = (),
    instance: int | None = None,
) -> CancelResult:
    """Cancel ``job_id``'s unfinished entities (only ``entities``, when given).

    Raises :class:`~statesync.errors.UnknownJobError` for an unknown job and
    :class:`~statesync.errors.UnknownEntityError` for an entity the job does not have;
    an entity a live worker holds is reported in :attr:`CancelResult.busy` (stop that
    worker first, e.g. :meth:`JobHandle.stop`).
    """
    number, store_id = await resolve_instance(store, job_id, instance)
    spec = await store.get_job(store_id)
    records = await store.list_entities(store_id)
    unknown = [e for e in entities if e not in {r.entity for r in records}]
    if unknown:
        raise UnknownEntityError(job_id, unknown, [r.entity for r in records])
    target = namespaced(destination, job_namespace(spec))
    done: dict[str, list[str]] = {"cancelled": [], "final": [], "busy": []}
    for rec in records:
        if entities and rec.entity not in entities:
            continue
        if rec.state.is_done:
            done["final"].append(rec.entity)
        elif await _cancel_one(store, target, rec):
            done["cancelled"].append(rec.entity)
        else:
            done["busy"].append(rec.entity)
    return CancelResult(
        job_id, number, tuple(done["cancelled"]), tuple(done["final"]), tuple(done["busy"])
    )


async def _cancel_one(store: StateStore, destination: Destination, rec: EntityRecord) -> bool:
    """Cancel one entity under its lease; False when another worker holds the lease."""
    # A dead holder's lease is broken at once; a live one's is respected.
    lease = (await take_lease(store, rec.job_id, rec.entity, CANCEL_OWNER, _CANCEL_TTL)).lease
    if lease is None:
        return False
    try:
        await apply_trigger(store, rec.job_id, rec.entity, "cancel", lease=lease)
        await destination.discard(rec.destination_job, rec.entity)
    finally:
        await store.release_lease(lease)
    return True
