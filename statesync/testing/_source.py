"""What a contract case asks of the connector under test, and how its walk is driven."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from attrs import field, frozen

from statesync._models import FetchState, Page, ResumableFetchOptions, SyncMode
from statesync.connector import BaseConnector

BASE_CREATED = 1_700_000_000
"""Creation time (Unix seconds) of the first record :meth:`Case.records` suggests."""


@frozen
class Case:
    """One contract case: how many records the entity must hold, and why.

    ``name`` says which case asks (``full_walk``, ``empty``, ``resume`` ...). A
    source factory loads ``size`` records into its fake server (its own, or the ones
    :meth:`records` suggests) and answers a :class:`Source`. A factory called twice with
    equal cases must serve equal data: the resume case rebuilds the source per state.
    """

    name: str
    size: int
    page_size: int

    def records(self) -> list[dict[str, object]]:
        """Suggested records, oldest first: ``id``, ``created`` and ``updated`` (Unix
        seconds; every fourth pair shares a creation second, so ties are exercised)."""
        out: list[dict[str, object]] = []
        for index in range(self.size):
            created = BASE_CREATED + (index * 3 // 4) * 61
            out.append({"id": f"rec_{index:06d}", "created": created, "updated": created})
        return out


@frozen
class Source:
    """A connector serving one entity of a case, and what the case must find.

    ``updated``: each record's update time, for the incremental ``since`` case (leave it
    empty to skip that case). ``fail_next``: make the fake server answer the entity's next
    request with an HTTP status, for the error-mapping case (``None`` skips it).
    """

    connector: BaseConnector
    entity: str
    expected_ids: frozenset[str]
    page_size: int = 10
    updated: Mapping[str, datetime] = field(factory=dict)
    fail_next: Callable[[int], object] | None = None


SourceFactory = Callable[[Case], Awaitable[Source]]
"""What the ``contract_source`` fixture returns: build the source a case asks for."""


async def collect(
    src: Source,
    max_iterations: int,
    start: FetchState | None = None,
    *,
    since: datetime | None = None,
) -> tuple[list[str], list[int], list[FetchState], list[Page]]:
    """Drive ``fetch_entity_chunk`` to the end: ids, pages per chunk, state and page per page."""
    ids: list[str] = []
    per_chunk: list[int] = []
    states: list[FetchState] = []
    pages: list[Page] = []
    state = start
    mode = SyncMode.INCREMENTAL if since is not None else SyncMode.FULL

    async def on_page(page: Page, after: FetchState) -> None:
        ids.extend(r.id for r in page.records)
        states.append(after)
        pages.append(page)

    while state is None or state.has_more:
        before = len(states)
        opts = ResumableFetchOptions(
            entity=src.entity,
            max_iterations=max_iterations,
            state=state,
            page_size=src.page_size,
            since=since,
            mode=mode,
        )
        state = await src.connector.fetch_entity_chunk(opts, on_page)
        per_chunk.append(len(states) - before)
        assert len(per_chunk) < 10_000, "the connector never reported the end"
    return ids, per_chunk, states, pages


def assert_exact(ids: list[str], expected: frozenset[str]) -> None:
    """Every expected id once, nothing else."""
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"duplicated ids: {dupes[:5]}"
    assert set(ids) == expected, (
        f"missing {sorted(expected - set(ids))[:5]}, extra {sorted(set(ids) - expected)[:5]}"
    )


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
