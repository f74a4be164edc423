"""The connector contract: a base class of pytest cases every connector must pass.

Subclass :class:`ConnectorContract` in a test module and give it a ``contract_source``
fixture returning a :data:`~statesync.testing.SourceFactory`; the fixture may reuse one
fake server for every case, loading each case's data into it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import pytest

from statesync._models import PageRequest, ResumableFetchOptions
from statesync._policy import ChunkPolicy, PolicySet, RetryPolicy
from statesync.errors import ConnectorError, ErrorKind
from statesync.testing._source import Case, Source, SourceFactory, as_utc, assert_exact, collect

STATUS_KINDS: dict[int, ErrorKind] = {
    429: ErrorKind.RATE_LIMITED,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    500: ErrorKind.TRANSIENT,
    503: ErrorKind.TRANSIENT,
    400: ErrorKind.BAD_REQUEST,
}
"""The kind each HTTP status must map to (see :func:`statesync.errors.error_for_status`)."""


class ConnectorContract:
    """Cases every connector passes; override the class attributes to describe yours.

    ``page_size``: the page size the cases request. ``reports_total``: the connector's
    first page states the entity's record count (``Page.total``). ``error_statuses``: the
    statuses the error case injects through ``Source.fail_next``.
    """

    pytestmark: ClassVar = [pytest.mark.asyncio]
    page_size: ClassVar[int] = 10
    reports_total: ClassVar[bool] = False
    error_statuses: ClassVar[tuple[int, ...]] = (429, 401, 500, 400)

    async def _source(self, factory: SourceFactory, name: str, size: int) -> Source:
        return await factory(Case(name, size, self.page_size))

    async def test_full_walk_returns_exact_dataset(self, contract_source: SourceFactory) -> None:
        src = await self._source(contract_source, "full_walk", self.page_size * 7 + 3)
        ids, _, states, _ = await collect(src, max_iterations=3)
        assert_exact(ids, src.expected_ids)
        assert states[-1].total_processed == len(src.expected_ids)
        assert states[-1].has_more is False

    async def test_chunks_stop_at_max_iterations(self, contract_source: SourceFactory) -> None:
        src = await self._source(contract_source, "chunk_boundaries", self.page_size * 7 + 3)
        _, per_chunk, states, _ = await collect(src, max_iterations=3)
        assert per_chunk[:-1] == [3] * (len(per_chunk) - 1)
        assert 1 <= per_chunk[-1] <= 3
        assert all(1 <= s.iterations_in_chunk <= 3 for s in states)

    async def test_resume_from_every_midway_state(self, contract_source: SourceFactory) -> None:
        size = self.page_size * 5 + 4
        src = await self._source(contract_source, "resume", size)
        ids, _, states, _ = await collect(src, max_iterations=2)
        for state in states[:-1]:
            head = ids[: state.total_processed]
            fresh = await self._source(contract_source, "resume", size)
            tail, _, _, _ = await collect(fresh, max_iterations=2, start=state)
            assert_exact(head + tail, src.expected_ids)

    async def test_empty_entity(self, contract_source: SourceFactory) -> None:
        src = await self._source(contract_source, "empty", 0)
        ids, per_chunk, states, _ = await collect(src, max_iterations=3)
        assert ids == []
        assert per_chunk == [1]
        assert states[-1].has_more is False

    async def test_single_page(self, contract_source: SourceFactory) -> None:
        src = await self._source(contract_source, "one_page", self.page_size - 1)
        ids, _, states, _ = await collect(src, max_iterations=3)
        assert_exact(ids, src.expected_ids)
        assert len(states) == 1

    async def test_exact_multiple_of_page_size(self, contract_source: SourceFactory) -> None:
        src = await self._source(contract_source, "exact_multiple", self.page_size * 4)
        ids, _, states, _ = await collect(src, max_iterations=3)
        assert_exact(ids, src.expected_ids)
        # An API may need one empty page to learn the end, never more.
        assert 4 <= len(states) <= 5

    async def test_incremental_since(self, contract_source: SourceFactory) -> None:
        src = await self._source(contract_source, "since", self.page_size * 3 + 5)
        if not src.updated:
            pytest.skip("the source states no update times (Source.updated)")
        times = sorted(as_utc(t) for t in src.updated.values())
        since = times[len(times) // 2]
        ids, _, _, pages = await collect(src, max_iterations=3, since=since)
        wanted = frozenset(i for i, t in src.updated.items() if as_utc(t) >= since)
        assert wanted <= set(ids), f"since {since} lost {sorted(wanted - set(ids))[:5]}"
        marks = [r.watermark for p in pages for r in p.records if r.watermark is not None]
        assert marks, "records of an incremental sync carry no watermark"
        assert min(as_utc(m) for m in marks) >= since - timedelta(seconds=1)

    async def test_errors_map_to_kinds(self, contract_source: SourceFactory) -> None:
        src = await self._source(contract_source, "errors", self.page_size * 2)
        if src.fail_next is None:
            pytest.skip("the source cannot inject errors (Source.fail_next)")
        options = ResumableFetchOptions(src.entity, page_size=self.page_size)
        first = PageRequest(
            entity=src.entity,
            state=src.connector.initial_state(options),
            page_size=self.page_size,
            since=None,
            mode=options.mode,
        )
        for status in self.error_statuses:
            src.fail_next(status)
            with pytest.raises(ConnectorError) as caught:
                await src.connector.fetch_page(first)
            assert caught.value.kind is STATUS_KINDS[status], f"HTTP {status}: {caught.value}"
        page = await src.connector.fetch_page(first)  # the faults are gone
        assert page.records

    async def test_totals(self, contract_source: SourceFactory) -> None:
        if not self.reports_total:
            pytest.skip("the connector does not report totals (reports_total = False)")
        src = await self._source(contract_source, "totals", self.page_size * 3 + 1)
        _, _, _, pages = await collect(src, max_iterations=3)
        assert pages[0].total == len(src.expected_ids)

    async def test_planned_pages_and_windows(self, contract_source: SourceFactory) -> None:
        from statesync.adapters.local import LocalRunner
        from statesync.destinations.memory import MemoryDestination
        from statesync.stores.memory import MemoryStateStore

        src = await self._source(contract_source, "concurrent", self.page_size * 9 + 2)
        conn = src.connector
        options = ResumableFetchOptions(src.entity, page_size=self.page_size)
        first = PageRequest(
            src.entity, conn.initial_state(options), self.page_size, None, options.mode
        )
        if conn.partitioning(src.entity) is None and not conn.plan_pages(first, 2):
            pytest.skip("the connector plans no pages and offers no windows")
        chunk = ChunkPolicy(max_iterations=3, page_size=self.page_size, pages_in_flight=4)
        destination = MemoryDestination()
        runner = LocalRunner(
            connector=conn,
            store=MemoryStateStore(),
            destination=destination,
            policies=PolicySet(retry=RetryPolicy(attempts=3), chunk=chunk),
            namespace="",  # the shared tables: rows are read back by entity name
        )
        result = await runner.sync([src.entity])
        assert result.ok, result
        assert_exact(list(destination.rows(src.entity)), src.expected_ids)
