"""The public API as user code writes it, for ``mypy --strict`` (checked, never run).

Not a test module (pytest does not collect it): it exists so that a constructor typed
for the library's own convenience (``converter=dict``, say) but not for its callers
fails CI. Each function is a snippet a user would write; none is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import assert_type

from statesync import (
    BaseConnector,
    ChunkPolicy,
    Event,
    FetchState,
    JobSpec,
    KindOverride,
    LoggingListener,
    Page,
    PageRequest,
    Partition,
    PolicySet,
    Record,
    RetryPolicy,
    SyncMode,
    job_status,
    policies_from_mapping,
)
from statesync._models import JSON
from statesync.adapters.local import JobResult, LocalRunner
from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity
from statesync.connectors.memory import MemoryConnector
from statesync.connectors.rest import RESTAuth, RESTConnector, RESTEntity
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import ErrorKind
from statesync.stores.sqlite import SQLiteStateStore


def graphql_entities() -> Mapping[str, GraphQLEntity]:
    issues = GraphQLEntity(
        query="query($first: Int, $after: String) { repo { issues { nodes { id } } } }",
        path="repo.issues",
        variables={"owner": "octo", "labels": ["bug"], "first": 50},
        updated_field="updatedAt",
        window_variables=["createdGte", "createdLt"],
    )
    variables: Mapping[str, JSON] = issues.variables
    assert_type(issues.path, tuple[str, ...])
    return {"issues": GraphQLEntity("query { a { id } }", ("a",), variables=variables)}


def rest_connector() -> RESTConnector:
    orders = RESTEntity(
        "/orders",
        params={"status": "open", "expand": ["lines"]},
        headers={"Accept": "application/json"},
        error_kinds={"RATE": ErrorKind.RATE_LIMITED, "BUSY": "transient"},
        records_path="data",
    )
    return RESTConnector(
        "https://api.example.com",
        {"orders": orders},
        auth=RESTAuth(type="bearer", token_env="EXAMPLE_TOKEN"),
    )


def policies() -> PolicySet:
    retry = RetryPolicy(
        attempts=5,
        initial_delay=1,
        max_delay=60,
        retry_on={ErrorKind.TIMEOUT, ErrorKind.TRANSIENT},
        kinds={"rate_limited": KindOverride(attempts=10), ErrorKind.TIMEOUT: KindOverride()},
    )
    chunk = ChunkPolicy(max_iterations=10, page_size=100)
    return PolicySet(
        retry=retry,
        chunk=chunk,
        retry_overrides={"stripe.invoices": RetryPolicy(attempts=2)},
        chunk_overrides={"stripe": ChunkPolicy.for_timeout(60)},
    )


def loaded_policies() -> PolicySet:
    return policies_from_mapping({"default": {"retry": {"attempts": 3}}})


def states() -> set[FetchState]:
    first = FetchState(metadata={"created": 17, "ids": ["a", "b"]})
    later = first.advance(Page((), has_more=True, metadata={"page": 2}))
    split = FetchState(partitions=[Partition(lower=0, upper=10, metadata={"k": 1})])
    stored: Mapping[str, JSON] = later.metadata
    assert_type(later.position(), tuple[int | None, str | None, Mapping[str, JSON]])
    del stored
    return {first, later, split}  # values are hashable


def job() -> JobSpec:
    return JobSpec("nightly", "stripe", ("customers",), SyncMode.INCREMENTAL, params={"a": 1})


class Printer:
    def on_event(self, event: Event) -> None:
        print(type(event).__name__)


class Static(BaseConnector):
    """A user's own connector: one page of two records."""

    name = "static"

    def entities(self) -> Sequence[str]:
        return ("things",)

    async def fetch_page(self, request: PageRequest) -> Page:
        records = (Record("1", {"id": "1"}), Record("2", {"id": "2", "tags": ["x"]}))
        return Page(records, has_more=False)


async def run_locally(path: str) -> JobResult:
    runner = LocalRunner(
        connector=Static(),
        store=SQLiteStateStore(f"{path}/state.db"),
        destination=SQLiteDestination(f"{path}/out.db"),
        policies=policies(),
        listeners=[LoggingListener(), Printer()],
        namespace="shop",
    )
    result = await runner.sync(["things"], mode=SyncMode.FULL)
    handle = await runner.start(["things"], params={"note": "typed"})
    await handle.wait()
    status = await job_status(runner.store, result.job_id)
    print(status.to_json(), result.ok, [(e.entity, e.state, e.records) for e in result.entities])
    return await runner.run(result.job_id, retry_failed=True)


def other_connectors() -> Sequence[BaseConnector]:
    return (
        StripeConnector("sk_test_123", entities=["customers"]),
        GraphQLConnector("https://api.example.com/graphql", entities=graphql_entities()),
        MemoryConnector({"things": [{"id": "1", "updated_at": "2024-01-01T00:00:00Z"}]}),
        rest_connector(),
    )
