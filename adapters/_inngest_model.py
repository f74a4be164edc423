"""Values the Inngest adapter puts in events and step outputs.

Everything here crosses Inngest's wire, so it is small, JSON-shaped and free of secrets:
event data names a job and an entity (never a key), and a step output is a
:class:`ChunkSummary` (machine state, ``FetchState``, counts), never records.
Structuring and unstructuring go through the one converter in
:mod:`statesync._converter`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import inngest
from attrs import field, frozen
from cattrs.errors import BaseValidationError

from statesync._chunk import ChunkOutcome
from statesync._converter import converter
from statesync._models import JSON, EntityRecord, ErrorInfo, FetchState, SyncMode, SyncState

T = TypeVar("T")

RUNNING_STATES = frozenset({SyncState.PENDING, SyncState.FETCHING, SyncState.CHUNK_DONE})


@frozen
class EventNames:
    """The event names of one adapter instance, all under one prefix."""

    prefix: str

    @property
    def job_requested(self) -> str:
        return f"{self.prefix}/job.requested"

    @property
    def entity_sync(self) -> str:
        return f"{self.prefix}/entity.sync"

    @property
    def entity_continue(self) -> str:
        return f"{self.prefix}/entity.continue"

    @property
    def entity_finished(self) -> str:
        return f"{self.prefix}/entity.finished"


def _entities(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"entities must be a list of names, got {value!r}")
    return tuple(str(v) for v in value)


@frozen
class JobRequest:
    """``{prefix}/job.requested`` data. ``connector`` names a factory the app was given."""

    connector: str
    entities: tuple[str, ...] = field(converter=_entities)
    job_id: str | None = None
    mode: SyncMode = SyncMode.FULL
    params: Mapping[str, JSON] = field(factory=dict)
    retry_failed: bool = False
    """Fire ``resume`` on entities a previous request left ``failed``."""


@frozen
class EntityTask:
    """``entity.sync`` / ``entity.continue`` data; ``account`` feeds the concurrency key."""

    job_id: str
    entity: str
    account: str


@frozen
class JobPlan:
    """The job step's output: which entities still need a run."""

    job_id: str
    account: str
    pending: tuple[str, ...]


@frozen
class ChunkSummary:
    """One chunk step's output, read back from the store's record.

    It is derived only from what the store holds after the chunk, so a step re-run after
    its response was lost (which finds the chunk done and fetches nothing) returns the
    very same summary.
    """

    job_id: str
    entity: str
    chunk: int
    next_chunk: int
    state: SyncState
    fetch_state: FetchState
    records: int
    attempts: int
    error: ErrorInfo | None = None

    @property
    def finished(self) -> bool:
        return self.state not in RUNNING_STATES

    @staticmethod
    def peek(raw: object) -> tuple[int, bool]:
        """``(next_chunk, finished)`` of an unstructured summary.

        Replay re-reads every memoized chunk of a run on every request, so the loop
        reads just the two fields it needs instead of structuring each summary.
        """
        try:
            next_chunk, state = raw["next_chunk"], SyncState(raw["state"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError) as exc:
            raise inngest.NonRetriableError(f"malformed ChunkSummary: {exc}") from exc
        if not isinstance(next_chunk, int):
            raise inngest.NonRetriableError(f"malformed ChunkSummary: next_chunk={next_chunk!r}")
        return next_chunk, state not in RUNNING_STATES

    @classmethod
    def of(cls, out: ChunkOutcome) -> ChunkSummary:
        return cls(
            job_id=out.job_id,
            entity=out.entity,
            chunk=out.chunk_index,
            next_chunk=out.chunk_index + 1,
            state=out.state,
            fetch_state=out.fetch_state,
            records=out.fetch_state.total_processed,
            attempts=out.attempts,
            error=out.error,
        )


@frozen
class EntitySummary:
    entity: str
    state: SyncState
    records: int
    chunks: int
    error: str | None = None

    @classmethod
    def of(cls, rec: EntityRecord) -> EntitySummary:
        error = f"{rec.last_error.kind}: {rec.last_error.message}" if rec.last_error else None
        return cls(rec.entity, rec.state, rec.records, rec.chunk_index, error)


@frozen
class JobSummary:
    """The job run's return value: every entity's end state."""

    job_id: str
    entities: tuple[EntitySummary, ...]

    @property
    def ok(self) -> bool:
        return all(e.state is SyncState.COMPLETE for e in self.entities)


def dump(value: object) -> dict[str, Any]:
    """A step output or event payload: plain JSON (the converter's shape)."""
    out: dict[str, Any] = converter.unstructure(value)
    return out


def load(raw: object, cls: type[T]) -> T:
    """Read event data or a memoized step output; bad data is never worth a retry."""
    try:
        return converter.structure(raw, cls)
    except (BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise inngest.NonRetriableError(f"malformed {cls.__name__}: {exc}") from exc


def literal(value: str) -> str:
    """A string literal for an Inngest (CEL) expression."""
    return json.dumps(value)
