"""Throughput helpers: a logging destination, stop-after listeners, sandbox runners."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from statesync import ChunkPolicy, Record, RetryPolicy, SyncMode
from statesync.adapters.local import LocalRunner
from statesync.connector import BaseConnector
from statesync.destinations.memory import MemoryDestination
from statesync.events import PageWritten
from statesync.stores.memory import MemoryStateStore

FAST = RetryPolicy(attempts=5, initial_delay=0.001, jitter=0)


class LoggingDestination(MemoryDestination):
    """Remembers every id ever written, in order, to catch a page landing twice."""

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[str, list[str]] = {}

    async def write_page(
        self,
        job_id: str,
        entity: str,
        mode: SyncMode,
        records: Sequence[Record],
        watermark: datetime | None,
        *,
        fence: int | None = None,
        checkpoint: str | None = None,
    ) -> None:
        await super().write_page(
            job_id, entity, mode, records, watermark, fence=fence, checkpoint=checkpoint
        )
        self.written.setdefault(entity, []).extend(r.id for r in records)


class StopAfter:
    """A listener that asks ``runner`` to stop once ``records`` records have landed."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.runner: LocalRunner | None = None

    def on_event(self, event: Any) -> None:
        if isinstance(event, PageWritten) and event.total_records >= self.records:
            assert self.runner is not None
            self.runner.request_stop()


RETRY = RetryPolicy(attempts=8, initial_delay=0.01, jitter=0)


def runner(conn: BaseConnector, dest: LoggingDestination, **policy: Any) -> LocalRunner:
    store = policy.pop("store", MemoryStateStore())
    listeners = policy.pop("listeners", ())
    return LocalRunner(
        connector=conn,
        store=store,
        destination=dest,
        chunk_policy=ChunkPolicy(**{"max_iterations": 12, "page_size": 20, **policy}),
        retry_policy=RETRY,
        listeners=listeners,
        namespace="",  # the shared tables: written rows are keyed by entity name
    )


def no_repeats(written: Sequence[str]) -> None:
    dupes = [i for i, n in Counter(written).items() if n > 1]
    assert not dupes, f"handed out twice: {dupes[:5]}"
