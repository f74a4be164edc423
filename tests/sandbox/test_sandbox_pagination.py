"""Stripe list semantics: ordering, cursors, created filters, record shape."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from statesync.sandbox import Sandbox, SandboxConfig
from support.sandbox_lib import AUTH, walk


def _sort_key(record: dict[str, Any]) -> tuple[int, str]:
    return record["created"], record["id"]


@pytest.mark.parametrize("size", [0, 1, 100, 250])
@pytest.mark.parametrize("limit", [100, 7, 1])
def test_walk_serves_every_record_once_newest_first(size: int, limit: int) -> None:
    with (
        Sandbox(SandboxConfig(sizes={"customers": size})) as sandbox,
        httpx.Client(base_url=sandbox.url, headers=AUTH) as http,
    ):
        records = walk(http, "customers", limit=limit)
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)) == size
        assert records == sandbox.snapshot("customers")
        assert records == sorted(records, key=_sort_key, reverse=True)


def test_list_envelope_and_default_limit(client: httpx.Client) -> None:
    page = client.get("/v1/customers").json()
    assert page["object"] == "list"
    assert page["url"] == "/v1/customers"
    assert page["has_more"] is True
    assert len(page["data"]) == 10
    response = client.get("/v1/customers")
    assert response.headers["content-length"] == str(len(response.content))


def test_created_ties_are_broken_by_id_descending(sandbox: Sandbox) -> None:
    records = sandbox.snapshot("charges")
    created = [r["created"] for r in records]
    assert len(set(created)) < len(created), "the dataset should contain ties"
    for newer, older in itertools.pairwise(records):
        if newer["created"] == older["created"]:
            assert newer["id"] > older["id"]


def test_ending_before_walks_back_towards_newest(client: httpx.Client, sandbox: Sandbox) -> None:
    everything = sandbox.snapshot("invoices")
    cursor = everything[-1]["id"]
    collected: list[dict[str, Any]] = []
    while True:
        page = client.get("/v1/invoices", params={"limit": 25, "ending_before": cursor}).json()
        collected = page["data"] + collected
        if not page["has_more"]:
            break
        cursor = page["data"][0]["id"]
    assert collected == everything[:-1]


def test_ending_before_returns_the_adjacent_page(client: httpx.Client, sandbox: Sandbox) -> None:
    everything = sandbox.snapshot("customers")
    page = client.get(
        "/v1/customers", params={"limit": 3, "ending_before": everything[10]["id"]}
    ).json()
    assert page["data"] == everything[7:10]
    assert page["has_more"] is True


@pytest.mark.parametrize(
    ("op", "keep"),
    [
        ("gte", lambda c, t: c >= t),
        ("gt", lambda c, t: c > t),
        ("lte", lambda c, t: c <= t),
        ("lt", lambda c, t: c < t),
    ],
)
def test_created_filters(
    client: httpx.Client, sandbox: Sandbox, op: str, keep: Callable[[int, int], bool]
) -> None:
    everything = sandbox.snapshot("charges")
    threshold = everything[len(everything) // 3]["created"]
    served = walk(client, "charges", limit=17, **{f"created[{op}]": threshold})
    assert served == [r for r in everything if keep(r["created"], threshold)]
    assert served


def test_created_range_and_exact(client: httpx.Client, sandbox: Sandbox) -> None:
    everything = sandbox.snapshot("charges")
    low, high = everything[200]["created"], everything[50]["created"]
    served = walk(client, "charges", limit=9, **{"created[gte]": low, "created[lt]": high})
    assert served == [r for r in everything if low <= r["created"] < high]
    exact = walk(client, "charges", created=low)
    assert exact == [r for r in everything if r["created"] == low]
    empty = client.get("/v1/charges", params={"created[gt]": 2_000_000_000}).json()
    assert empty == {"object": "list", "url": "/v1/charges", "has_more": False, "data": []}


def test_retrieve_one_record(client: httpx.Client, sandbox: Sandbox) -> None:
    record = sandbox.snapshot("products")[3]
    assert client.get(f"/v1/products/{record['id']}").json() == record
    missing = client.get("/v1/products/prod_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"


@pytest.mark.parametrize(
    ("entity", "prefix", "obj"),
    [
        ("customers", "cus_", "customer"),
        ("invoices", "in_", "invoice"),
        ("charges", "ch_", "charge"),
        ("subscriptions", "sub_", "subscription"),
        ("products", "prod_", "product"),
        ("payouts", "payo_", "payout"),
    ],
)
def test_records_look_like_stripe_objects(entity: str, prefix: str, obj: str) -> None:
    with Sandbox(SandboxConfig(sizes={entity: 30})) as sandbox:
        for record in sandbox.snapshot(entity):
            assert record["id"].startswith(prefix)
            assert record["object"] == obj
            assert record["livemode"] is False
            assert isinstance(record["created"], int)
            assert isinstance(record["metadata"], dict)
            assert 250 <= len(json.dumps(record)) <= 650


def test_data_is_deterministic_per_seed() -> None:
    def data(seed: int) -> list[dict[str, Any]]:
        return Sandbox(SandboxConfig(sizes={"customers": 20}, seed=seed)).snapshot("customers")

    assert data(1) == data(1)
    assert data(1) != data(2)


def test_page_serving_is_fast(client: httpx.Client) -> None:
    import time

    started = time.perf_counter()
    for _ in range(100):
        assert len(client.get("/v1/charges", params={"limit": 100}).json()["data"]) == 100
    # ~27k records/s target through httpx: 100 pages of 100 must take well under 1 s.
    assert time.perf_counter() - started < 1.5
