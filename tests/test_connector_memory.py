from __future__ import annotations

import pytest

from statesync.connectors.memory import MemoryConnector
from support.connector_contract import ConnectorContract, MakeSource, Source


@pytest.fixture
def make_source() -> MakeSource:
    async def make(size: int) -> Source:
        rows = [{"id": f"r{i:05d}", "n": i} for i in range(size)]
        conn = MemoryConnector({"things": rows})
        return Source(
            conn, "things", frozenset(str(r["id"]) for r in rows), ConnectorContract.page_size
        )

    return make


class TestMemoryConnector(ConnectorContract):
    pass
