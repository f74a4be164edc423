"""A test kit for connectors: the contract every statesync connector passes.

Install the ``testing`` extra (``pip install 'statesync[testing]'``), then::

    import pytest
    from statesync.testing import Case, ConnectorContract, Source


    class TestMyConnector(ConnectorContract):
        page_size = 10

        @pytest.fixture
        def contract_source(self, fake_server):
            async def build(case: Case) -> Source:
                fake_server.load(case.records())  # the case's data, into your fake API
                ids = frozenset(r["id"] for r in case.records())
                return Source(MyConnector(fake_server.url), "items", ids, case.page_size)

            return build

The cases: full walks, chunk boundaries at ``max_iterations``, resume from every mid-way
``FetchState``, an empty entity, one page, an exact multiple of the page size,
incremental ``since`` (with ``Source.updated``), errors mapped to kinds (with
``Source.fail_next``), totals (``reports_total = True``), and planned pages and
time windows through the real engine when the connector offers them. A case that does
not apply is skipped with its reason. :func:`crash_then_resume` (and the
``crash_resume`` fixture of the pytest plugin) SIGKILLs ``statesync run`` at a named
point and resumes it.
"""

from __future__ import annotations

from statesync.testing import _requires  # noqa: F401  (first: names the missing extra)
from statesync.testing._contract import STATUS_KINDS, ConnectorContract
from statesync.testing._crash import CrashResume, crash_then_resume, statesync
from statesync.testing._source import (
    BASE_CREATED,
    Case,
    Source,
    SourceFactory,
    assert_exact,
    collect,
)

__all__ = [
    "BASE_CREATED",
    "STATUS_KINDS",
    "Case",
    "ConnectorContract",
    "CrashResume",
    "Source",
    "SourceFactory",
    "assert_exact",
    "collect",
    "crash_then_resume",
    "statesync",
]
