"""The engine over the memory connector: rows, a runner, a destination that breaks."""

from __future__ import annotations

from typing import Any

from statesync import (
    ChunkPolicy,
    RetryPolicy,
)
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.stores.memory import MemoryStateStore

FAST = RetryPolicy(attempts=3, initial_delay=0.001, jitter=0)


def rows(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i:05d}", "n": i, "updated_at": f"2026-01-01T00:{i % 60:02d}:00+00:00"}
        for i in range(n)
    ]


def runner(conn: MemoryConnector, **kw: Any) -> LocalRunner:
    return LocalRunner(
        connector=conn,
        store=kw.pop("store", MemoryStateStore()),
        destination=kw.pop("destination", MemoryDestination()),
        chunk_policy=kw.pop("chunk_policy", ChunkPolicy(max_iterations=3, page_size=10)),
        retry_policy=kw.pop("retry_policy", FAST),
        namespace=kw.pop(
            "namespace", ""
        ),  # the shared tables: these tests are not about namespaces
        **kw,
    )


class BrokenFor(MemoryDestination):
    """A destination whose writes for one entity fail (its disk is gone, say)."""

    def __init__(self, entity: str) -> None:
        super().__init__()
        self.entity = entity

    async def write_page(self, job_id: str, entity: str, *a: Any, **kw: Any) -> None:
        if entity == self.entity:
            from statesync.errors import DestinationError

            raise DestinationError("disk full")
        await super().write_page(job_id, entity, *a, **kw)
