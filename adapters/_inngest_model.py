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
from datetime import timedelta
from typing import Any, TypeVar

import attrs
from attrs import field, frozen
from cattrs.errors import BaseValidationError

from statesync._chunk import ChunkOutcome
from statesync._converter import converter
from statesync._extras import Extra
from statesync._models import (
    JSON,
    EntityRecord,
    ErrorInfo,
    FetchState,
    JobSpec,
    SyncMode,
    SyncState,
)

INNGEST = Extra("the Inngest adapter", "inngest", "inngest")
"""The ``inngest`` SDK; :func:`~statesync.adapters.inngest.sync_functions` requires it."""

with INNGEST.importing():
    import inngest

T = TypeVar("T")

RUNNING_STATES = frozenset({SyncState.PENDING, SyncState.FETCHING, SyncState.CHUNK_DONE})
FINAL_STATES = tuple(s.value for s in SyncState if s not in RUNNING_STATES)

MAX_EVENT_BYTES = 256 * 1024
"""Inngest's smallest event size limit (the free plan's; paid plans allow 3 MiB)."""
MIN_RETRY_AFTER = timedelta(seconds=1)
MAX_RETRY_AFTER = timedelta(hours=24)
"""Inngest clamps a ``RetryAfterError`` delay into this range; the adapter does first."""


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

    @property
    def job_batch(self) -> str:
        return f"{self.prefix}/job.batch"

    @property
    def batch_finished(self) -> str:
        return f"{self.prefix}/batch.finished"


def job_instance(spec: JobSpec) -> str:
    """The id of one *instance* of a job: the only place the adapter derives it.

    Every event id that must collapse duplicates (fan-out, hand-over) and every wait is
    keyed by it, never by a run id, so two requests for one job share one chain per
    entity, while a job id reused after the old job expired is a new instance. It is
    the destinations' key too (:attr:`EntityRecord.destination_job`): a job's records
    and its spec carry the same creation time.
    """
    if spec.created_at is None:
        return spec.job_id
    return f"{spec.job_id}@{spec.created_at.isoformat()}"


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
    """``entity.sync`` / ``entity.continue`` data; ``account`` feeds the concurrency key.

    ``chain`` names the chain of runs this one belongs to (``sync`` for a job's first,
    ``resume-{version}`` for one a ``retry_failed`` request started) and ``start`` the
    chunk it starts at: with ``instance`` they make the run's event id and idempotency
    key, so a duplicate of any of them starts nothing.
    """

    job_id: str
    entity: str
    account: str
    instance: str = ""
    chain: str = "sync"
    start: int = 0

    @property
    def event_id(self) -> str:
        return f"{self.instance}/{self.entity}/{self.chain}/{self.start}"

    def handover(self, chunk: int) -> EntityTask:
        return attrs.evolve(self, start=chunk)


@frozen
class JobBatch:
    """``job.batch`` data: a slice of a job too large for one run's 1,000 steps."""

    job_id: str
    instance: str
    batch: int
    start: int
    stop: int
    retry_failed: bool = False


@frozen
class JobPlan:
    """The job step's output: which entities still need a run.

    ``batches`` (``(start, stop)`` slices of the job's entities) is set instead of
    ``tasks`` when the job is too large for one run to wait on every entity.
    """

    job_id: str
    instance: str
    account: str
    tasks: tuple[EntityTask, ...] = ()
    batches: tuple[tuple[int, int], ...] = ()


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
    def is_terminal(self) -> bool:
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

    def brief(self) -> dict[str, Any]:
        """The memoized output of a chunk that did not end the entity.

        The SDK replays every memo of a run on each request, at a cost that grows with
        the memos' number and size; a mid-run chunk needs only what :meth:`peek` reads.
        """
        if self.is_terminal:
            return dump(self)
        return {"next_chunk": self.next_chunk, "state": self.state.value}

    @classmethod
    def done(cls, rec: EntityRecord, chunk: int) -> ChunkSummary:
        """The summary of chunk ``chunk`` that the store already shows finished."""
        return cls(
            job_id=rec.job_id,
            entity=rec.entity,
            chunk=chunk,
            next_chunk=chunk + 1,
            state=rec.state,
            fetch_state=rec.fetch_state,
            records=rec.records,
            attempts=rec.attempts,
            error=rec.last_error,
        )

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
    """A CEL string literal for an Inngest expression, valid for any Unicode text.

    ASCII only: quotes, backslashes and control characters escaped; other characters as
    ``\\uXXXX`` or, outside the Basic Multilingual Plane, ``\\UXXXXXXXX`` (CEL has no
    surrogate pairs, which ``json.dumps`` would write). A lone surrogate is no
    character at all and is refused.
    """
    out = ['"']
    for char in value:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{value!r} holds a lone surrogate, not text")
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def event_bytes(event: Mapping[str, Any]) -> int:
    """An event's size as Inngest counts it: its JSON encoding."""
    return len(json.dumps(event, separators=(",", ":")).encode())


def retry_after(seconds: float) -> timedelta:
    """A retry delay Inngest accepts as given (1 s to 24 h)."""
    return min(max(timedelta(seconds=seconds), MIN_RETRY_AFTER), MAX_RETRY_AFTER)
