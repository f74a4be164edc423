"""Creation-time partitions: how an entity's windows start, move and split (pure).

An entity whose connector offers :class:`~statesync.connector.Partitioning` starts as one
window, open on both sides (or bounded below by the incremental ``since``). Each window
is walked with its own cursor. When a page shows that its window still holds more and
fewer windows are running than the policy's pages_in_flight, the rest of the window is split
in two at a creation time chosen from the density the page revealed: the part next to
the cursor keeps it, the far part becomes a new window with no cursor. For a list
served newest first, a page ending at creation time ``edge`` leaves ``[lower, edge]``;
the window keeps ``[mid, upper)`` (``mid <= edge``: every record older than the cursor
at or after ``mid``) and the new one is ``[lower, mid)``. Nothing is fetched twice,
nothing is skipped, whatever the ties at ``edge``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

import attrs

from statesync._models import FetchState, Page, PageRequest, Partition, SyncMode, TimeWindow
from statesync.connector import Partitioning

SPLIT_PAGES = 20
"""Pages, at the density a page shows, that the near part of a split window keeps."""


def initial(
    partitioning: Partitioning, mode: SyncMode, since_ts: int | None
) -> tuple[Partition, ...]:
    lower = partitioning.lower
    if mode is SyncMode.INCREMENTAL and since_ts is not None:
        lower = since_ts if lower is None else max(lower, since_ts)
    return (Partition(lower=lower),)


def advance(
    state: FetchState,
    window: TimeWindow,
    page: Page,
    *,
    partitioning: Partitioning,
    pages_in_flight: int,
    page_size: int,
) -> FetchState:
    """The entity's state once ``page`` of ``window`` has been written.

    Windows are found by their bounds, which stay put while a request of theirs is in
    flight (only the window whose page arrived moves or splits). Finished windows are
    dropped, so a checkpoint holds the live windows only.
    """
    parts = list(state.partitions)
    index = next(i for i, p in enumerate(parts) if p.window == window)
    old = parts[index]
    moved = attrs.evolve(
        old,
        cursor=page.next_cursor,
        offset=page.next_offset,
        records=old.records + len(page.records),
        done=not page.has_more,
        metadata=page.metadata if page.metadata is not None else old.metadata,
    )
    parts[index] = moved
    active = sum(not p.done for p in parts)
    if not moved.done and active < pages_in_flight:
        split = _split(moved, page, partitioning.newest_first, page_size)
        if split is not None:
            parts[index], far = split
            parts.append(far)
    live = tuple(p for p in parts if not p.done)
    return attrs.evolve(
        state,
        partitions=live,
        total_processed=state.total_processed + len(page.records),
        has_more=bool(live),
        iterations_in_chunk=state.iterations_in_chunk + 1,
    )


def compact(state: FetchState) -> FetchState:
    """Drop finished windows (checkpoints written before they were dropped eagerly)."""
    live = tuple(p for p in state.partitions if not p.done)
    return state if len(live) == len(state.partitions) else attrs.evolve(state, partitions=live)


def _split(
    part: Partition, page: Page, newest_first: bool, page_size: int
) -> tuple[Partition, Partition] | None:
    times = [r.created_at.timestamp() for r in page.records if r.created_at is not None]
    if not times or len(times) < len(page.records):
        return None
    width = _width(times, page_size)
    far_metadata = dict(part.metadata)
    if newest_first:
        edge = int(min(times))  # what is left: [lower, edge]
        if part.lower is not None and edge - part.lower < 1:
            return None
        mid = edge - width
        if part.lower is not None:
            mid = max(mid, part.lower + (edge - part.lower + 1) // 2)
        near = attrs.evolve(part, lower=mid)
        far = Partition(lower=part.lower, upper=mid, metadata=far_metadata)
    else:
        edge = int(max(times))  # what is left: [edge, upper)
        if part.upper is not None and part.upper - edge < 2:
            return None
        mid = edge + width
        if part.upper is not None:
            mid = min(mid, max(edge + 1, edge + (part.upper - edge) // 2))
        near = attrs.evolve(part, upper=mid)
        far = Partition(lower=mid, upper=part.upper, metadata=far_metadata)
    return near, far


def _width(times: Sequence[float], page_size: int) -> int:
    """Seconds that hold about ``SPLIT_PAGES`` pages at the density of ``times``."""
    span = max(1.0, max(times) - min(times))
    return max(1, int(span * SPLIT_PAGES * page_size / len(times)))


def sent_bounds(request: PageRequest) -> tuple[int | None, int | None]:
    """The creation-time bounds a connector whose ``since`` is a change time sends: the
    request's window, but never ``since`` itself.

    The engine starts an incremental walk of windows at ``since`` as a creation time
    (Stripe filters incremental syncs by creation). A change-time ``since`` is another
    matter: a record created before it may have changed after it, so the oldest window,
    the only one whose lower bound is ``since`` itself, stays open below (the since
    filter, if the connector sends one, does the filtering).
    """
    window = request.window
    if window is None:
        return None, None
    lower = window.lower
    since = request.since
    if lower is not None and since is not None and request.mode is SyncMode.INCREMENTAL:
        moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
        if lower == int(moment.timestamp()):
            lower = None
    return lower, window.upper
