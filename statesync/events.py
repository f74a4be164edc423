"""Typed events the engine emits, and the listener protocol that receives them.

Logging and progress display are listeners; so is anything a user adds (a metrics
exporter, say). A listener must be quick and must not raise: errors it raises are
logged and swallowed so that observing a sync can never break it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from attrs import frozen

from statesync._models import ErrorInfo, SyncState

_log = logging.getLogger("statesync.events")


@frozen
class TransitionEvent:
    job_id: str
    entity: str
    trigger: str
    source: SyncState
    dest: SyncState
    chunk_index: int
    error: ErrorInfo | None = None


@frozen
class ChunkStarted:
    job_id: str
    entity: str
    chunk_index: int


@frozen
class PageWritten:
    job_id: str
    entity: str
    chunk_index: int
    records: int
    total_records: int
    total_hint: int | None


@frozen
class ChunkFinished:
    job_id: str
    entity: str
    chunk_index: int
    pages: int
    records: int
    duration: float
    state: SyncState


@frozen
class RetryScheduled:
    job_id: str
    entity: str
    chunk_index: int
    attempt: int
    delay: float
    cause: ErrorInfo


@frozen
class RateLimitWait:
    job_id: str
    entity: str
    delay: float


@frozen
class LeaseWait:
    """Another live worker holds the entity's lease; this one waits for it."""

    job_id: str
    entity: str
    holder: str
    expires_in: float
    """Seconds until the holder's lease lapses unless its heartbeat renews it."""
    gives_up_in: float | None
    """Seconds until this worker stops waiting (``None``: it waits as long as it takes)."""


@frozen
class LeaseTakeover:
    """The lease's holder was a process on this host that no longer exists: taken over."""

    job_id: str
    entity: str
    previous: str


@frozen
class JobFinished:
    job_id: str
    states: tuple[tuple[str, SyncState], ...]


Event = (
    TransitionEvent
    | ChunkStarted
    | PageWritten
    | ChunkFinished
    | RetryScheduled
    | RateLimitWait
    | LeaseWait
    | LeaseTakeover
    | JobFinished
)


@runtime_checkable
class Listener(Protocol):
    def on_event(self, event: Event) -> None: ...


class Emitter:
    """Fans one event out to several listeners, isolating their failures."""

    __slots__ = ("_listeners",)

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self._listeners = tuple(listeners)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener.on_event(event)
            except Exception:  # noqa: BLE001 - a broken listener must not break a sync
                _log.exception("listener %r failed on %s", listener, type(event).__name__)
