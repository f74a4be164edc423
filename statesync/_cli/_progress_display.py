"""Live progress bars (rich) for the command line; also usable as any listener."""

from __future__ import annotations

import time

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
