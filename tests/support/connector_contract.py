"""The connector contract for this repository's connectors: statesync.testing's, fed by
each test module's ``make_source(size)`` fixture (one source per record count)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from statesync import FetchState
from statesync.testing import Case, Source, SourceFactory, assert_exact
from statesync.testing import ConnectorContract as _KitContract
from statesync.testing import collect as _collect

MakeSource = Callable[[int], Awaitable[Source]]

__all__ = ["ConnectorContract", "MakeSource", "Source", "assert_exact", "collect"]


async def collect(
    src: Source, max_iterations: int, start: FetchState | None = None
) -> tuple[list[str], list[int], list[FetchState]]:
    ids, per_chunk, states, _ = await _collect(src, max_iterations, start)
    return ids, per_chunk, states


class ConnectorContract(_KitContract):
    @pytest.fixture
    def contract_source(self, make_source: MakeSource) -> SourceFactory:
        async def build(case: Case) -> Source:
            return await make_source(case.size)

        return build
