"""Connector plugins: entry points (built-ins and a third-party package), module paths,
the Inngest adapter taking plugin factories, and the shipped kit run by a plugin."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from statesync import JobSpec, installed_connectors, job_factory, open_connector, resolve_connector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import ConfigurationError
from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore
from statesync.testing import Case, ConnectorContract, Source, SourceFactory
from support.inngest_app import functions
from support.inngest_executor import serving

ENTITY = "rest.widgets"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes={ENTITY: 75, "graphql.tickets": 5})) as running:
        yield running


def test_built_ins_and_the_plugin_resolve_through_entry_points() -> None:
    assert {"stripe", "close", "graphql", "rest", "widgets"} <= set(installed_connectors())
    import statesync_widgets

    assert resolve_connector("widgets") is statesync_widgets.connector
    assert resolve_connector("statesync_widgets:connector") is statesync_widgets.connector


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gizmos", "unknown connector 'gizmos'; installed: close, graphql, rest, stripe"),
        ("no_such_module:factory", "cannot import 'no_such_module'"),
        ("statesync_widgets:nothing", "statesync_widgets has no 'nothing'"),
        ("statesync_widgets:__doc__", "is not a factory"),
    ],
)
def test_unresolvable_connectors_say_why(name: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        resolve_connector(name)


def test_a_missing_key_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="set MY_STRIPE_KEY"):
        open_connector("stripe", {"api_key_env": "MY_STRIPE_KEY"}, {})
    with pytest.raises(ConfigurationError, match="unknown option of connector 'stripe'"):
        open_connector("stripe", {"skip_cap": 3}, {"STATESYNC_API_KEY": "k"})


async def test_an_open_graphql_endpoint_needs_no_key(sandbox: Sandbox) -> None:
    from statesync import FetchState, PageRequest, SyncMode
    from statesync.errors import AuthError

    query = 'query($first: Int, $after: String) { workspace(slug: "acme") { tickets(first: $first, after: $after) { nodes { id updatedAt } pageInfo { hasNextPage endCursor } } } }'  # noqa: E501
    options = {
        "base_url": f"{sandbox.url}/graphql",
        "api_key_env": "",
        "entities": {"tickets": {"query": query, "path": "workspace.tickets"}},
    }
    conn = open_connector("graphql", options, {})  # no key anywhere
    before = len(sandbox.log())
    with pytest.raises(AuthError):  # the sandbox's endpoint is not open: no key was sent
        await conn.fetch_page(PageRequest("tickets", FetchState(), 5, None, SyncMode.FULL))
    await conn.aclose()
    assert [e.key_id for e in sandbox.log()[before:]] == [None]


class TestWidgetsPluginContract(ConnectorContract):
    """What a third-party package runs: the shipped kit against its own fake server."""

    @pytest.fixture
    async def contract_source(self, sandbox: Sandbox) -> AsyncIterator[SourceFactory]:
        opened = []

        async def build(case: Case) -> Source:
            sandbox.faults.clear_rules()
            sandbox.resize(ENTITY, case.size)
            conn = open_connector(
                "widgets", {"base_url": sandbox.url}, {"WIDGETS_TOKEN": sandbox.config.api_key}
            )
            opened.append(conn)
            ids = frozenset(r["id"] for r in sandbox.snapshot(ENTITY))

            def fail_next(status: int) -> None:
                sandbox.faults.add_rule(FaultRule("/rest/cursor/widgets", nth=1, status=status))

            return Source(conn, "widgets", ids, case.page_size, fail_next=fail_next)

        yield build
        for conn in opened:
            await conn.aclose()


def live(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute('SELECT id FROM "widgets"')]


@pytest.mark.slow
async def test_inngest_takes_the_plugin_factory_as_is(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statesync.adapters.inngest import job_requested

    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 75)
    monkeypatch.setenv("WIDGETS_URL", sandbox.url)
    monkeypatch.setenv("WIDGETS_TOKEN", sandbox.config.api_key)
    db = tmp_path / "w.db"
    make = functions(
        {"widgets": resolve_connector("widgets")}, MemoryStateStore(), SQLiteDestination(db)
    )
    async with serving(make) as ex:
        await ex.send(job_requested("widgets", ["widgets"], job_id="jw"))
        await ex.run_until_idle()
    assert sorted(live(db)) == sorted(r["id"] for r in sandbox.snapshot(ENTITY))


@pytest.mark.slow
async def test_inngest_with_options_for_the_plugin(sandbox: Sandbox, tmp_path: Path) -> None:
    from statesync.adapters.inngest import job_requested

    sandbox.faults.clear_rules()
    sandbox.resize(ENTITY, 33)
    factory = job_factory(
        "widgets", {"base_url": sandbox.url}, env={"WIDGETS_TOKEN": sandbox.config.api_key}
    )
    built = factory(JobSpec("x", "widgets", ("widgets",)))
    assert built.entities() == ("widgets",)
    await built.aclose()
    db = tmp_path / "w.db"
    make = functions({"widgets": factory}, MemoryStateStore(), SQLiteDestination(db))
    async with serving(make) as ex:
        await ex.send(job_requested("widgets", ["widgets"], job_id="jw2"))
        await ex.run_until_idle()
    assert sorted(live(db)) == sorted(r["id"] for r in sandbox.snapshot(ENTITY))
