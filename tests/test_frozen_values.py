"""Values documented as frozen are frozen all the way down, and hashable."""

from __future__ import annotations

import json
import pickle
from typing import Any, cast

import pytest

from statesync import FetchState, JobSpec, KindOverride, PolicySet, RetryPolicy
from statesync._converter import converter, dumps, loads
from statesync._models import Page, Partition
from statesync.connectors._rest_entity import RESTEntity
from statesync.connectors.graphql import GraphQLEntity
from statesync.errors import ErrorKind


def test_fetch_state_metadata_cannot_change_and_the_state_hashes() -> None:
    fs = FetchState(metadata={"a": 1, "ids": [1, 2], "window": {"lo": 0}})
    with pytest.raises(TypeError, match="immutable"):
        fs.metadata["b"] = 2  # type: ignore[index]
    with pytest.raises(TypeError, match="immutable"):
        fs.metadata["window"]["lo"] = 5
    assert fs.metadata["ids"] == (1, 2)  # nested lists are tuples
    assert hash(FetchState()) == hash(FetchState())
    assert {fs: 1}[FetchState(metadata={"window": {"lo": 0}, "ids": (1, 2), "a": 1})] == 1


def test_a_callers_dict_is_copied_not_shared() -> None:
    given: dict[str, Any] = {"ids": [1]}
    fs = FetchState(metadata=given)
    given["ids"].append(2)
    given["x"] = 1
    assert fs.metadata == {"ids": (1,)}


def test_the_json_round_trip_is_plain_json_and_loads_equal() -> None:
    fs = FetchState(
        metadata={"ids": [1, 2], "w": {"a": [3]}},
        partitions=[Partition(lower=0, upper=5, metadata={"seen": ["x"]})],
    )
    plain = converter.unstructure(fs)
    assert type(plain["metadata"]) is dict and type(plain["metadata"]["ids"]) is list
    assert type(plain["metadata"]["w"]["a"]) is list
    assert loads(dumps(fs), FetchState) == fs
    assert hash(loads(dumps(fs), FetchState)) == hash(fs)


def test_a_checkpoint_stored_before_freezing_loads_unchanged() -> None:
    stored = json.dumps(
        {"offset": 40, "cursor": None, "total_processed": 40, "has_more": True,
         "iterations_in_chunk": 2, "metadata": {"created": 17, "ids": ["a", "b"]},
         "partitions": []}
    )  # fmt: skip
    fs = loads(stored, FetchState)
    assert fs.offset == 40 and fs.metadata == {"created": 17, "ids": ("a", "b")}
    assert json.loads(dumps(fs))["metadata"] == {"created": 17, "ids": ["a", "b"]}


def test_pages_partitions_and_jobs_freeze_their_mappings() -> None:
    page = Page((), has_more=True, metadata={"k": [1]})
    assert page.metadata == {"k": (1,)}
    assert FetchState().advance(page).metadata is page.metadata  # frozen once, not per copy
    part = Partition(metadata={"k": 1})
    spec = JobSpec("j", "stripe", ("customers",), params={"connector": {"options": {"a": [1]}}})
    for mapping in (part.metadata, spec.params, spec.params["connector"]):
        with pytest.raises(TypeError):
            cast(dict[str, Any], mapping).clear()
    assert hash(part) == hash(Partition(metadata={"k": 1}))
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_policies_hash_with_their_overrides() -> None:
    policies = PolicySet(retry_overrides={"stripe": RetryPolicy(attempts=2)})
    assert hash(policies) == hash(PolicySet(retry_overrides={"stripe": RetryPolicy(attempts=2)}))
    tuned = RetryPolicy(kinds={"timeout": KindOverride(attempts=2)})
    assert tuned != RetryPolicy() and {tuned: 1}[RetryPolicy(kinds=tuned.kinds)] == 1
    with pytest.raises(TypeError):
        policies.retry_overrides["close"] = RetryPolicy()  # type: ignore[index]
    assert policies.retry_for("stripe").attempts == 2


def test_connector_entities_freeze_what_they_are_given() -> None:
    gql = GraphQLEntity("query { a }", "a", variables={"owner": "x", "labels": ["bug"]})
    assert gql.variables == {"owner": "x", "labels": ("bug",)}
    assert hash(gql) == hash(GraphQLEntity("query { a }", ("a",), variables=gql.variables))
    rest = RESTEntity("/items", params={"q": "x"}, headers={"H": "v"}, error_kinds={"E": "timeout"})
    assert rest.error_kinds == {"E": ErrorKind.TIMEOUT}
    with pytest.raises(TypeError):
        rest.params["q"] = "y"  # type: ignore[index]
    assert hash(rest) == hash(
        RESTEntity("/items", params={"q": "x"}, headers={"H": "v"}, error_kinds={"E": "timeout"})
    )
