"""Creation-time windows, pure: how ``statesync._partitions`` cuts a window when a page
lands (how many windows, how large), and that any walk hands out every record once."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from statesync._models import FetchState, Page, Partition, Record, TimeWindow
from statesync._partitions import MIN_PAGES, OPEN_CUTS, SPLIT_PAGES, advance
from statesync.connector import Partitioning

T = 1_700_000_000
PAGE = 100
NEWEST, OLDEST = Partitioning(newest_first=True), Partitioning(newest_first=False)


def at(seconds: int, name: str | None = None) -> Record:
    created = datetime.fromtimestamp(seconds, UTC)
    return Record(id=name or f"r{seconds}", data={}, created_at=created)


def page_of(times: Sequence[int], *, more: bool = True) -> Page:
    """A full page of records created at ``times`` (one a second, as listed)."""
    records = tuple(at(t) for t in times)
    return Page(records=records, has_more=more, next_cursor=records[-1].id)


def land(
    parts: Sequence[Partition], window: TimeWindow, page: Page, order: Partitioning = NEWEST
) -> tuple[Partition, ...]:
    state = FetchState(partitions=tuple(parts))
    after = advance(state, window, page, partitioning=order, pages_in_flight=8, page_size=PAGE)
    return after.partitions


def contiguous(parts: Sequence[Partition]) -> None:
    """The windows tile the timeline, no gap and no overlap (sorted by creation time)."""
    ordered = sorted(parts, key=lambda p: -(2**62) if p.lower is None else p.lower)
    for older, newer in pairwise(ordered):
        assert older.upper == newer.lower, ordered


# Step of the pages above: 100 records over 99 seconds, so 99 seconds a page.
STEP = 99


def test_an_open_rest_adds_open_cuts_windows_a_page() -> None:
    """The walk's first page cuts once (the records may end within the near part); then
    each page of the window open below cuts twice, SPLIT_PAGES pages apart (one split a
    page added one window): eight windows in four round trips, and past the end of the
    records a request or two wasted, not seven."""
    first = land([Partition()], TimeWindow(), page_of(range(T, T - PAGE, -1)))
    width = int(STEP * SPLIT_PAGES)
    near, rest = first
    assert near == Partition(lower=T - 99 + 1 - width, cursor=f"r{T - 99}", records=PAGE)
    assert rest == Partition(lower=None, upper=near.lower)
    top = (rest.upper or 0) - 1
    parts = land(first, rest.window, page_of(range(top, top - PAGE, -1)))
    assert OPEN_CUTS == 2 and len(parts) == 4
    _, walked, cut, rest = parts
    assert walked.cursor == f"r{top - 99}" and walked.upper == near.lower
    assert walked.lower == top - 99 + 1 - width  # keeps SPLIT_PAGES pages
    assert (cut.lower, cut.upper, cut.cursor) == (walked.lower - width, walked.lower, None)
    assert rest == Partition(lower=None, upper=cut.lower)
    contiguous(parts)


def test_oldest_first_cuts_towards_the_newest() -> None:
    first = land([Partition()], TimeWindow(), page_of(range(T, T + PAGE)), OLDEST)
    width = int(STEP * SPLIT_PAGES)
    near, rest = first
    assert near.lower is None and near.upper == T + 99 + width
    bottom = rest.lower or 0
    parts = land(first, rest.window, page_of(range(bottom, bottom + PAGE)), OLDEST)
    _, walked, cut, rest = parts
    assert walked.upper == bottom + 99 + width
    assert (cut.lower, cut.upper) == (walked.upper, (walked.upper or 0) + width)
    assert rest == Partition(lower=cut.upper, upper=None)
    contiguous(parts)


def test_bounded_windows_leave_splitting_to_the_open_one() -> None:
    """Three of eight slots busy: the bounded window does not cut its large rest while
    the window open below lives (it cuts full-size windows when its page lands)."""
    low = T - 100 * STEP
    frontier = Partition(lower=None, upper=low)
    near = Partition(lower=low, upper=None, cursor="r0")
    other = Partition(lower=low - 10, upper=low - 5)
    page = page_of(range(T - 1000, T - 1000 - PAGE, -1))
    assert land([near, frontier, other], near.window, page) == (
        Partition(lower=low, cursor=page.next_cursor, records=PAGE),
        frontier,
        other,
    )
    # Without one, the same rest is cut into equal parts to fill the free slots.
    alone = land([near, other], near.window, page)
    assert len(alone) == 1 + 7
    sizes = {p.upper - p.lower for p in alone[2:] if p.upper and p.lower}
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= MIN_PAGES * STEP
    contiguous([p for p in alone if p is not other])


@pytest.mark.parametrize(("pages_left", "windows"), [(2, 1), (5, 1), (6, 2), (9, 3), (99, 8)])
def test_a_bounded_rest_is_cut_into_parts_of_min_pages(pages_left: int, windows: int) -> None:
    """What ``since`` bounds below is cut in equal parts of MIN_PAGES pages or more: a
    smaller window would cost its partial page for little concurrency."""
    edge = T - 99
    since = edge + 1 - pages_left * STEP
    parts = land([Partition(lower=since)], TimeWindow(since), page_of(range(T, edge - 1, -1)))
    assert len(parts) == windows
    contiguous(parts)
    bounds = sorted(p.lower for p in parts if p.lower is not None)
    sizes = [b - a for a, b in pairwise([*bounds, edge + 1])]
    assert windows == 1 or min(sizes) >= MIN_PAGES * STEP, sizes


# -- whole walks: nothing twice, nothing skipped -----------------------------------------


def listing(rng: random.Random, newest_first: bool) -> list[Record]:
    """Records as the API lists them, many sharing a second (ties at every edge)."""
    times = sorted(T + rng.randrange(0, 1000) for _ in range(600))
    records = [at(t, f"r{i:05d}") for i, t in enumerate(times)]
    return records[::-1] if newest_first else records


def answer(records: Sequence[Record], part: Partition, size: int) -> Page:
    """The API's page of ``part``: records in its window after its cursor, in list order."""
    window = part.window
    start = 0 if part.cursor is None else 1 + [r.id for r in records].index(part.cursor)

    def inside(r: Record) -> bool:
        assert r.created_at is not None
        t = int(r.created_at.timestamp())
        return (window.lower is None or t >= window.lower) and (
            window.upper is None or t < window.upper
        )

    rest = [r for r in records[start:] if inside(r)]
    got = tuple(rest[:size])
    cursor = got[-1].id if got else part.cursor
    return Page(records=got, has_more=len(rest) > size, next_cursor=cursor)


def walk(seed: int, newest_first: bool, lower: int | None) -> list[str]:
    """A whole walk with requests landing in random order and free slots changing."""
    rng = random.Random(seed)
    records = listing(rng, newest_first)
    order = Partitioning(newest_first=newest_first)
    state = FetchState(partitions=(Partition(lower=lower),))
    flying: dict[TimeWindow, Page] = {}
    handed: list[str] = []
    while state.has_more:
        for part in state.partitions[:8]:
            flying.setdefault(part.window, answer(records, part, 10))
        window = rng.choice(list(flying))
        page = flying.pop(window)
        handed += [r.id for r in page.records]
        slots = rng.randint(1, 8)
        state = advance(
            state, window, page, partitioning=order, pages_in_flight=slots, page_size=10
        )
    return handed


@pytest.mark.parametrize("newest_first", [True, False], ids=["newest-first", "oldest-first"])
@pytest.mark.parametrize("lower", [None, T + 300], ids=["open", "since"])
def test_any_walk_hands_out_every_record_once(newest_first: bool, lower: int | None) -> None:
    for seed in range(10):
        handed = walk(seed, newest_first, lower)
        dupes = [i for i, n in Counter(handed).items() if n > 1]
        assert not dupes, (seed, dupes[:5])
        expected = {
            r.id
            for r in listing(random.Random(seed), newest_first)
            if lower is None or (r.created_at and r.created_at.timestamp() >= lower)
        }
        assert set(handed) == expected, seed
