"""The connector contract suite: every connector passes it against its (emulated) API.

A test module subclasses :class:`ConnectorContract` and provides ``make_source``: a
fixture returning a function ``(size) -> Source`` that serves one entity holding
``size`` records and knows their ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from attrs import frozen

from statesync import FetchState, Page, ResumableFetchOptions
from statesync.connector import BaseConnector


@frozen
class Source:
    connector: BaseConnector
    entity: str
    expected_ids: frozenset[str]
    page_size: int


MakeSource = Callable[[int], Awaitable[Source]]


async def collect(
    src: Source, max_iterations: int, start: FetchState | None = None
) -> tuple[list[str], list[int], list[FetchState]]:
    """Drive ``fetch_entity_chunk`` to the end; ids, pages per chunk, state per page."""
    ids: list[str] = []
    per_chunk: list[int] = []
    states: list[FetchState] = []
    state = start

    async def on_page(page: Page, after: FetchState) -> None:
        ids.extend(r.id for r in page.records)
        states.append(after)

    while state is None or state.has_more:
        before = len(states)
        opts = ResumableFetchOptions(
            entity=src.entity,
            max_iterations=max_iterations,
            state=state,
            page_size=src.page_size,
        )
        state = await src.connector.fetch_entity_chunk(opts, on_page)
        per_chunk.append(len(states) - before)
        assert len(per_chunk) < 10_000, "connector never reported the end"
    return ids, per_chunk, states


def assert_exact(ids: list[str], expected: frozenset[str]) -> None:
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"duplicated ids: {dupes[:5]}"
    assert set(ids) == expected, (
        f"missing {sorted(expected - set(ids))[:5]}, extra {sorted(set(ids) - expected)[:5]}"
    )


class ConnectorContract:
    page_size = 10

    async def test_full_sync_returns_exact_dataset(self, make_source: MakeSource) -> None:
        src = await make_source(self.page_size * 7 + 3)
        ids, _, states = await collect(src, max_iterations=3)
        assert_exact(ids, src.expected_ids)
        assert states[-1].total_processed == len(src.expected_ids)
        assert states[-1].has_more is False

    async def test_chunks_stop_at_max_iterations(self, make_source: MakeSource) -> None:
        src = await make_source(self.page_size * 7 + 3)
        _, per_chunk, states = await collect(src, max_iterations=3)
        assert per_chunk[:-1] == [3] * (len(per_chunk) - 1)
        assert 1 <= per_chunk[-1] <= 3
        assert all(1 <= s.iterations_in_chunk <= 3 for s in states)

    async def test_resume_from_every_midway_state(self, make_source: MakeSource) -> None:
        src = await make_source(self.page_size * 5 + 4)
        ids, _, states = await collect(src, max_iterations=2)
        for state in states[:-1]:
            head = ids[: state.total_processed]
            fresh = await make_source(self.page_size * 5 + 4)
            tail, _, _ = await collect(fresh, max_iterations=2, start=state)
            assert_exact(head + tail, src.expected_ids)

    async def test_empty_entity(self, make_source: MakeSource) -> None:
        src = await make_source(0)
        ids, per_chunk, states = await collect(src, max_iterations=3)
        assert ids == []
        assert per_chunk == [1]
        assert states[-1].has_more is False

    async def test_single_page(self, make_source: MakeSource) -> None:
        src = await make_source(self.page_size - 1)
        ids, _, states = await collect(src, max_iterations=3)
        assert_exact(ids, src.expected_ids)
        assert len(states) == 1

    async def test_exact_multiple_of_page_size(self, make_source: MakeSource) -> None:
        src = await make_source(self.page_size * 4)
        ids, _, states = await collect(src, max_iterations=3)
        assert_exact(ids, src.expected_ids)
        # An API may need one empty page to learn the end, never more.
        assert 4 <= len(states) <= 5
