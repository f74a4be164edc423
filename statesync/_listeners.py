"""Listeners shipped with statesync: structured logging and live progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from statesync._models import SyncState
from statesync._redact import redact
from statesync.events import (
    ChunkFinished,
    ChunkStarted,
    Event,
    JobFinished,
    PageWritten,
    RateLimitWait,
    RetryScheduled,
    TransitionEvent,
)


class LoggingListener:
    """Logs every event on the ``statesync`` logger, with its fields in ``extra``.

    Each record carries ``record.statesync`` (a dict: event name, job, entity and the
    event's own fields), so a JSON log formatter can emit them as they are. Messages
    and fields go through :func:`redact` with the ``secrets`` given, and known
    credential shapes are masked even when not given.
    """

    def __init__(
        self, logger: logging.Logger | None = None, *, secrets: Iterable[str] = ()
    ) -> None:
        self.logger = logger or logging.getLogger("statesync")
        self.secrets = tuple(secrets)

    def on_event(self, event: Event) -> None:
        level = _level(event)
        if not self.logger.isEnabledFor(level):
            return
        fields = _fields(event)
        message = redact(_message(event, fields), self.secrets)
        safe = {k: redact(v, self.secrets) if isinstance(v, str) else v for k, v in fields.items()}
        self.logger.log(level, message, extra={"statesync": safe})


def _level(event: Event) -> int:
    if isinstance(event, RetryScheduled):
        return logging.WARNING
    if isinstance(event, TransitionEvent) and event.dest is SyncState.FAILED:
        return logging.ERROR
    if isinstance(event, PageWritten):
        return logging.DEBUG
    return logging.INFO


def _fields(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"event": type(event).__name__}
    for name in event.__attrs_attrs__:
        value = getattr(event, name.name)
        if hasattr(value, "__attrs_attrs__"):  # ErrorInfo
            value = {"kind": value.kind, "message": value.message}
        elif isinstance(value, SyncState):
            value = value.value
        elif name.name == "states":
            value = {entity: state.value for entity, state in value}
        out[name.name] = value
    return out


def _message(event: Event, f: dict[str, Any]) -> str:
    if isinstance(event, TransitionEvent):
        why = f" ({event.error.kind}: {event.error.message})" if event.error else ""
        return (
            f"{event.entity}: {event.trigger} {event.source.value} -> {event.dest.value} "
            f"at chunk {event.chunk_index}{why}"
        )
    if isinstance(event, RetryScheduled):
        return (
            f"{event.entity}: chunk {event.chunk_index} attempt {event.attempt} failed "
            f"({event.cause.kind}: {event.cause.message}); retry in {event.delay:.2f}s"
        )
    if isinstance(event, RateLimitWait):
        return f"{event.entity}: waiting {event.delay:.2f}s for the API's rate limit"
    if isinstance(event, JobFinished):
        return f"job {event.job_id} finished: " + ", ".join(
            f"{e}={s.value}" for e, s in event.states
        )
    details = " ".join(f"{k}={v}" for k, v in f.items() if k not in ("event", "job_id"))
    return f"{f['event']} {details}"


class ProgressDisplay:
    """Rich progress bars per entity: records, rate, ETA when the total is known,
    current chunk and state. Use it as a context manager around the run."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.fields[entity]:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9} rec/s"),
            TimeRemainingColumn(),
            TextColumn("chunk {task.fields[chunk]:>4} {task.fields[state]}"),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _task(self, entity: str) -> TaskID:
        if entity not in self._tasks:
            self._started[entity] = time.monotonic()
            self._tasks[entity] = self.progress.add_task(
                entity, total=None, entity=entity, rate="-", chunk=0, state="pending"
            )
        return self._tasks[entity]

    def on_event(self, event: Event) -> None:
        if isinstance(event, PageWritten):
            task = self._task(event.entity)
            elapsed = max(time.monotonic() - self._started[event.entity], 1e-6)
            self.progress.update(
                task,
                completed=event.total_records,
                total=event.total_hint,
                rate=f"{event.total_records / elapsed:,.0f}",
                chunk=event.chunk_index,
            )
        elif isinstance(event, ChunkStarted):
            self.progress.update(self._task(event.entity), chunk=event.chunk_index)
        elif isinstance(event, TransitionEvent):
            task = self._task(event.entity)
            self.progress.update(task, state=event.dest.value, chunk=event.chunk_index)
            if event.dest is SyncState.COMPLETE:
                done = self.progress.tasks[self._index(task)].completed
                self.progress.update(task, total=done, completed=done)
        elif isinstance(event, ChunkFinished | RetryScheduled | RateLimitWait | JobFinished):
            return

    def _index(self, task: TaskID) -> int:
        return next(i for i, t in enumerate(self.progress.tasks) if t.id == task)
