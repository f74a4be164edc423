"""An in-memory connector: offset pagination over lists of dicts.

For tests and embedding (a source that is already in memory), and as the smallest
example of the connector contract. ``resumable=False`` makes it behave as a connector
without resumable fetching, to exercise the engine's unchunked fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from statesync._models import Page, PageRequest, Record, SyncMode
from statesync.connector import BaseConnector
from statesync.errors import BadRequestError, ConnectorError

FaultHook = Callable[[PageRequest, int], ConnectorError | None]
"""Called with each request and its 1-based call number; an error it returns is raised."""


class MemoryConnector(BaseConnector):
    name = "memory"

    def __init__(
        self,
        data: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        id_field: str = "id",
        updated_field: str | None = "updated_at",
        resumable: bool = True,
        fault: FaultHook | None = None,
    ) -> None:
        self.data = {k: list(v) for k, v in data.items()}
        self.id_field = id_field
        self.updated_field = updated_field
        self.resumable = resumable
        self.fault = fault
        self.calls = 0

    def supports_resumable_fetching(self) -> bool:
        return self.resumable

    def entities(self) -> Sequence[str]:
        return tuple(self.data)

    def plan_pages(self, request: PageRequest, count: int) -> Sequence[PageRequest]:
        """Offsets are predictable: each page starts ``page_size`` after the last."""
        if not self.resumable:
            return ()
        start = request.state.offset or 0
        return tuple(
            attrs.evolve(
                request, state=attrs.evolve(request.state, offset=start + i * request.page_size)
            )
            for i in range(1, count + 1)
        )

    async def fetch_page(self, request: PageRequest) -> Page:
        await asyncio.sleep(0)  # a real API call yields to the loop; so does this one
        self.calls += 1
        if self.fault is not None and (error := self.fault(request, self.calls)) is not None:
            raise error
        if request.entity not in self.data:
            raise BadRequestError(f"unknown entity {request.entity!r}")
        rows = self._rows(request)
        start = request.state.offset or 0
        chunk = rows[start : start + request.page_size]
        end = start + len(chunk)
        return Page(
            records=tuple(self._record(r) for r in chunk),
            has_more=end < len(rows),
            next_offset=end,
            total=len(rows),
        )

    def _rows(self, request: PageRequest) -> list[Mapping[str, Any]]:
        rows = self.data[request.entity]
        if request.mode is SyncMode.INCREMENTAL and request.since and self.updated_field:
            since = request.since.isoformat()
            rows = [r for r in rows if str(r.get(self.updated_field, "")) >= since]
        return rows

    def _record(self, row: Mapping[str, Any]) -> Record:
        updated = row.get(self.updated_field) if self.updated_field else None
        return Record(
            id=str(row[self.id_field]),
            data=row,
            updated_at=datetime.fromisoformat(updated) if isinstance(updated, str) else None,
        )
