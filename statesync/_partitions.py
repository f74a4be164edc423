"""Creation-time partitions: how an entity's windows start, move and split (pure).

An entity whose connector offers :class:`~statesync.connector.Partitioning` starts as one
window, open on both sides (or bounded below by the incremental ``since``). Each window
is walked with its own cursor. When a page shows that its window still holds more and
fewer windows are running than the policy's pages_in_flight, the rest of the window is
cut, at creation times chosen from the density the page revealed, into windows that fill
the free slots: the part next to the cursor keeps it, the others are new windows with no
cursor. For a list served newest first, a page ending at creation time ``edge`` leaves
``[lower, edge]``; the window keeps ``[c1, upper)`` (``c1 <= edge``: every record older
than the cursor at or after ``c1``) and the new ones are ``[c2, c1)`` ... ``[lower,
ck)``. Nothing is fetched twice, nothing is skipped, whatever the ties at ``edge``.

Every window ends with a partial page, a whole request for less than a page's records,
so the cuts keep windows few and large: a rest open on its far side (its size unknown)
is cut at up to :data:`OPEN_CUTS` times (once on the walk's first page)
:data:`SPLIT_PAGES` pages apart, what lies beyond the last cut staying open; a bounded
rest is cut into equal parts of :data:`MIN_PAGES` pages at least, as many as the free
slots take; and while a window open on its far side is live, bounded windows leave
splitting to it (its next page cuts fresh windows of full size where a bounded rest
would leave small ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from itertools import pairwise

import attrs

from statesync._models import FetchState, Page, PageRequest, Partition, SyncMode, TimeWindow
from statesync.connector import Partitioning

SPLIT_PAGES = 20
"""Pages, at the density a page shows, that each window cut from an open rest holds."""
OPEN_CUTS = 2
"""Cuts a landed page makes in a rest open on its far side, at most (each adds a window;
one on the walk's first page, which says nothing of how far the records go). That
rest's size is unknown, and a window cut past the end of the records holds none and
costs a request: the open side adds two windows a page (eight in four round trips)
rather than filling every free slot at once."""
MIN_PAGES = 3
"""Pages, at that density, that every part of a split bounded rest holds at least."""


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
    free = pages_in_flight - sum(not p.done for p in parts)
    newest_first = partitioning.newest_first
    if not moved.done and free > 0 and not _defers(moved, parts, newest_first):
        split = _split(moved, page, newest_first, page_size, free + 1)
        if split is not None:
            parts[index] = split[0]
            parts.extend(split[1:])
    live = tuple(p for p in parts if not p.done)
    return attrs.evolve(
        state,
        partitions=live,
        total_processed=state.total_processed + len(page.records),
        has_more=bool(live),
        iterations_in_chunk=state.iterations_in_chunk + 1,
    )


def _open_far(part: Partition, newest_first: bool) -> bool:
    """Whether ``part`` is open on the side its walk goes towards: its size is unknown."""
    return (part.lower if newest_first else part.upper) is None


def _defers(part: Partition, parts: Sequence[Partition], newest_first: bool) -> bool:
    """Whether bounded ``part`` leaves splitting to a live window open on its far side.

    That window cuts fresh windows of :data:`SPLIT_PAGES` pages when its page lands
    (within a request's time), where splitting a bounded rest leaves small windows, and
    every window ends with a partial page: a request for less than a page's records.
    """
    if _open_far(part, newest_first):
        return False
    return any(_open_far(p, newest_first) and not p.done for p in parts)


def compact(state: FetchState) -> FetchState:
    """Drop finished windows (checkpoints written before they were dropped eagerly)."""
    live = tuple(p for p in state.partitions if not p.done)
    return state if len(live) == len(state.partitions) else attrs.evolve(state, partitions=live)


def _split(
    part: Partition, page: Page, newest_first: bool, page_size: int, parts: int
) -> list[Partition] | None:
    """The window cut into at most ``parts`` windows past ``page``, nearest first."""
    times = [r.created_at.timestamp() for r in page.records if r.created_at is not None]
    if not times or len(times) < len(page.records):
        return None
    step = _page_seconds(times, page_size)
    if part.lower is None and part.upper is None:
        parts = min(parts, 2)  # the walk's first page: nothing says the records go further
    if newest_first:
        edge = int(min(times))  # what is left: [lower, edge]
        span = None if part.lower is None else edge + 1 - part.lower
        cuts = [edge + 1 - d for d in _depths(span, step, parts)]
    else:
        edge = int(max(times))  # what is left: [edge, upper)
        span = None if part.upper is None else part.upper - edge
        cuts = [edge + d for d in _depths(span, step, parts)]
    return _pieces(part, cuts, newest_first) if cuts else None


def _depths(span: int | None, step: float, parts: int) -> list[int]:
    """Seconds past the page's edge at which the rest of a window is cut: ``span`` seconds
    long (``None``: open), ``step`` seconds a page."""
    if span is None:
        width = max(1, int(step * SPLIT_PAGES))
        return [i * width for i in range(1, min(parts, OPEN_CUTS + 1))]
    pieces = min(parts, int(span / (step * MIN_PAGES)))
    cuts = (round(i * span / pieces) for i in range(1, pieces))
    return sorted({d for d in cuts if 0 < d < span})  # equal parts, each a second at least


def _pieces(part: Partition, cuts: Sequence[int], newest_first: bool) -> list[Partition]:
    """``part`` keeping its cursor up to the first cut, then a fresh window between each
    cut and the next, the last one out to ``part``'s far bound."""
    metadata = dict(part.metadata)
    if newest_first:
        bounds = [*cuts, part.lower]
        near = attrs.evolve(part, lower=cuts[0])
        spans = [(lo, hi) for hi, lo in pairwise(bounds)]
    else:
        bounds = [*cuts, part.upper]
        near = attrs.evolve(part, upper=cuts[0])
        spans = list(pairwise(bounds))
    return [near, *(Partition(lower=lo, upper=hi, metadata=metadata) for lo, hi in spans)]


def _page_seconds(times: Sequence[float], page_size: int) -> float:
    """Seconds a page of ``page_size`` records spans at the density of ``times``."""
    return max(1.0, max(times) - min(times)) * page_size / len(times)


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
