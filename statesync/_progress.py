"""The engine's no-progress guard: every walk either moves or stops with a typed error.

A connector's walk can stall in ways its own code cannot always see: a server that
ignores the cursor answers the same page again, one that ignores the offset answers
the first page at every offset, one that ignores a window's filter answers records
outside the window. Each of these would make the chunk loop run until someone kills
it. The guard looks at every landed page of one walk (the entity's stream, or one
time window) and raises :class:`~statesync.errors.NoProgressError` as soon as:

* a page that says "more" leaves the position (offset, cursor, metadata) where the
  request had it: the next request would be the same one;
* a page hands out exactly the records of the page before it;
* a run of pages without records comes back to a position it already had, for the
  :data:`CYCLE_LIMIT`-th time (a cycle: once or twice is an anchored walk stepping back
  over data that changed meanwhile);
* a record's creation time falls outside the window the request was restricted to.

Each is caught within a few cycles' length of requests, and the error names the request
the connector sent (``Page.request``), so an operator sees which filter was ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import attrs

from statesync._models import JSON, FetchState, Page, PageRequest, Record, TimeWindow
from statesync._partitions import sent_bounds
from statesync.errors import NoProgressError

CYCLE_LIMIT = 3
"""Visits of one position within a run of empty pages that make it a cycle."""


def _key(position: tuple[int | None, str | None, Mapping[str, JSON]]) -> str:
    offset, cursor, metadata = position
    return json.dumps([offset, cursor, metadata], sort_keys=True, default=str)


def describe(request: PageRequest, page: Page | None = None) -> str:
    """The request as the connector showed it, or the engine's view of it."""
    if page is not None and page.request:
        return page.request
    state = request.state
    parts = [f"entity {request.entity!r}", f"offset={state.offset}", f"cursor={state.cursor}"]
    if request.window is not None:
        parts.append(f"window=[{request.window.lower}, {request.window.upper})")
    return " ".join(parts)


@attrs.define
class ProgressGuard:
    """Remembers what one walk has handed out lately (in memory, per chunk)."""

    last_ids: tuple[str, ...] | None = None
    empty_run: dict[str, int] = attrs.field(factory=dict)

    def check(self, request: PageRequest, page: Page, after: FetchState) -> None:
        """Raise :class:`NoProgressError` when ``page`` shows the walk is not moving."""
        if request.window is not None:
            _check_window(request, page, request.window)
        if not after.has_more:
            return
        ids = tuple(r.id for r in page.records)
        before = request.state.position()
        moved = after.position()
        if moved == before:
            raise _stalled(request, page, "the page left the position where the request had it")
        if ids and ids == self.last_ids:
            raise _stalled(request, page, "the page repeated the records of the page before")
        if ids:
            self.empty_run.clear()
            self.last_ids = ids
            return
        if not self.empty_run:
            self.empty_run[_key(before)] = 1
        key = _key(moved)
        self.empty_run[key] = visits = self.empty_run.get(key, 0) + 1
        if visits >= CYCLE_LIMIT:
            raise _stalled(request, page, "pages without records came back to a position")


def _check_window(request: PageRequest, page: Page, window: TimeWindow) -> None:
    # Below the oldest window's ``since`` may come records that a connector whose since
    # is a change time asks for (older records changed since count).
    lower, _ = sent_bounds(request)
    record = _outside(page.records, lower, window.upper)
    if record is not None and record.created_at is not None:
        raise NoProgressError(
            f"record {record.id!r} was created at {int(record.created_at.timestamp())}, "
            f"outside the window [{window.lower}, {window.upper}) the request was "
            "restricted to: the server ignored the window's filter",
            request=describe(request, page),
        )


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _outside(records: Sequence[Record], lower: int | None, upper: int | None) -> Record | None:
    """The first record created outside ``[lower, upper)`` (Unix seconds).

    Every windowed page passes here: the bounds become datetimes once and each record's
    time is compared as it is, a seventh of the cost of its ``timestamp()``. A naive
    time cannot be compared with them (nor a bound beyond datetime's range be one): such
    a page is judged by ``timestamp()``.
    """
    if lower is None and upper is None:
        return None
    try:
        low = _EARLIEST if lower is None else datetime.fromtimestamp(lower, UTC)
        high = _LATEST if upper is None else datetime.fromtimestamp(upper, UTC)
        for record in records:
            at = record.created_at
            if at is not None and not low <= at < high:
                return record
    except (TypeError, OverflowError, OSError, ValueError):
        return _outside_by_timestamp(records, lower, upper)
    return None


def _outside_by_timestamp(
    records: Sequence[Record], lower: int | None, upper: int | None
) -> Record | None:
    for record in records:
        if record.created_at is None:
            continue
        created = record.created_at.timestamp()
        if (lower is not None and created < lower) or (upper is not None and created >= upper):
            return record
    return None


def _stalled(request: PageRequest, page: Page, why: str) -> NoProgressError:
    return NoProgressError(
        f"the walk made no progress: {why} (the server may ignore the position or a "
        "filter it was sent)",
        request=describe(request, page),
    )
