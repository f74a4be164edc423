"""The Close CRM emulator plugin, spoken to directly over HTTP."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from statesync.sandbox import (
    CloseApi,
    CloseRateLimit,
    FaultRule,
    MutationRule,
    Sandbox,
    SandboxConfig,
)

KEY = SandboxConfig().api_key
SIZES = {
    "close.lead": 40,
    "close.contact": 12,
    "close.opportunity": 12,
    "close.activity_call": 6,
    "close.activity_email": 5,
    "close.activity_note": 4,
    "close.activity_meeting": 3,
    "close.activity_sms": 2,
    "close.custom_field_lead": 3,
    "close.custom_field_shared": 2,
    "close.user": 4,
}
PREFIXES = {
    "lead/": "lead_",
    "contact/": "cont_",
    "opportunity/": "oppo_",
    "activity/": "acti_",
    "activity/call/": "acti_",
    "custom_field/lead/": "cf_",
    "custom_field/shared/": "cf_",
    "user/": "user_",
}
RATE = re.compile(r"^limit=(\d+), remaining=(\d+), reset=(\d+\.\d+)$")


@pytest.fixture
def close() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(sizes=SIZES), plugins=[CloseApi(skip_cap=20)]) as running:
        yield running


@pytest.fixture
def http(close: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=close.url + "/api/v1", auth=(KEY, ""), timeout=10) as client:
        yield client


def get(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [r["id"] for r in body["data"]]


@pytest.mark.parametrize(("path", "prefix"), PREFIXES.items())
def test_records_are_close_shaped(http: httpx.Client, path: str, prefix: str) -> None:
    for record in get(http, path)["data"]:
        assert record["id"].startswith(prefix)
        assert "created" not in record  # the dataset's integer is not Close's
        for field in ("date_created", "date_updated"):
            assert datetime.fromisoformat(record[field]).utcoffset() is not None
        assert record["date_updated"] >= record["date_created"]


def test_data_is_deterministic() -> None:
    def leads() -> list[dict[str, Any]]:
        return Sandbox(SandboxConfig(sizes={"close.lead": 5}, seed=3)).snapshot("close.lead")

    assert leads() == leads()


def test_activity_lists_every_type_and_typed_paths_one(http: httpx.Client) -> None:
    everything = get(http, "activity/", _limit=100)["data"]
    assert len(everything) == 20
    assert {r["_type"] for r in everything} == {"Call", "Email", "Note", "Meeting", "SMS"}
    calls = get(http, "activity/call/", _limit=100)["data"]
    assert len(calls) == 6 and {r["_type"] for r in calls} == {"Call"}


def test_skip_limit_has_more_and_total_results(http: httpx.Client) -> None:
    first = get(http, "lead/", _limit=15, _order_by="date_created")
    last = get(http, "lead/", _skip=15, _limit=30, _order_by="date_created")
    assert (first["has_more"], last["has_more"]) == (True, False)
    assert first["total_results"] == last["total_results"] == 40
    assert len(set(ids(first) + ids(last))) == 40
    assert "total_results" not in get(http, "activity/")
    assert "total_results" not in get(http, "user/")


@pytest.mark.parametrize("field", ["date_created", "date_updated"])
def test_order_by_is_stable_with_an_id_tie_break(http: httpx.Client, field: str) -> None:
    rows = get(http, "lead/", _limit=100, _order_by=field)["data"]
    assert [(r[field], r["id"]) for r in rows] == sorted((r[field], r["id"]) for r in rows)
    # The dataset has ties on date_created; the order must not depend on luck.
    if field == "date_created":
        assert len({r[field] for r in rows}) < len(rows)
    down = get(http, "lead/", _limit=100, _order_by=f"-{field}")["data"]
    assert down == rows[::-1]


def test_fields_projects_records(http: httpx.Client) -> None:
    rows = get(http, "lead/", _fields="id,display_name,nope")["data"]
    assert all(set(r) == {"id", "display_name"} for r in rows)


@pytest.mark.parametrize(("op", "keep"), [("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")])
def test_date_filters(http: httpx.Client, op: str, keep: str) -> None:
    rows = get(http, "opportunity/", _limit=100)["data"]
    pivot = sorted(r["date_updated"] for r in rows)[5]
    got = get(http, "opportunity/", _limit=100, **{f"date_updated__{op}": pivot})
    compare = {
        ">": str.__gt__,
        ">=": str.__ge__,
        "<": str.__lt__,
        "<=": str.__le__,
    }[keep]
    assert set(ids(got)) == {r["id"] for r in rows if compare(r["date_updated"], pivot)}
    assert got["total_results"] == len(got["data"])


def test_lead_query_filters_by_date(http: httpx.Client) -> None:
    rows = get(http, "lead/", _limit=100)["data"]
    low, high = sorted(r["date_updated"] for r in rows)[10], max(r["date_updated"] for r in rows)
    query = f'date_updated >= "{low}" and date_updated < "{high}"'
    got = get(http, "lead/", _limit=100, query=query)
    assert set(ids(got)) == {r["id"] for r in rows if low <= r["date_updated"] < high}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"query": "name:acme"}, "query"),
        ({"date_created__gte": "last tuesday"}, "date_created__gte"),
        ({"_order_by": "name"}, "_order_by"),
        ({"_limit": "101"}, "_limit"),
        ({"_skip": "x"}, "_skip"),
    ],
)
def test_bad_parameters_are_field_errors(
    http: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = http.get("lead/", params=params)
    assert response.status_code == 400
    assert field in response.json()["field-errors"]


def test_skip_cap_is_closes_400(http: httpx.Client) -> None:
    assert http.get("lead/", params={"_skip": 20}).status_code == 200
    response = http.get("lead/", params={"_skip": 21})
    assert response.status_code == 400
    assert "maximum _skip" in response.json()["error"]


def test_retrieve_and_unknown_paths(http: httpx.Client, close: Sandbox) -> None:
    lead = close.snapshot("close.lead")[3]
    got = get(http, f"lead/{lead['id']}/")
    assert got == {k: v for k, v in lead.items() if k != "created"}
    call = close.snapshot("close.activity_call")[0]["id"]
    assert get(http, f"activity/{call}/")["id"] == call  # activity/ finds every type
    assert http.get("lead/lead_nope/").status_code == 404
    assert http.get("custom_field/opportunity/").status_code == 404  # not in this dataset
    assert http.get("nothing/").json() == {
        "error": "Unrecognized request URL (GET: /api/v1/nothing/)."
    }


@pytest.mark.parametrize(
    "auth",
    [
        None,
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": "Basic " + base64.b64encode(b"api_wrongkey123:").decode()},
    ],
)
def test_basic_auth_with_the_key_is_required(close: Sandbox, auth: dict[str, str] | None) -> None:
    response = httpx.get(close.url + "/api/v1/lead/", headers=auth or {})
    assert response.status_code == 401
    assert set(response.json()) == {"error"} and "wrongkey" not in response.text
    assert RATE.match(response.headers["RateLimit"])


def test_ratelimit_header_on_every_answer(http: httpx.Client) -> None:
    remaining = []
    for path in ("lead/", "user/", "lead/nope/x/y/"):
        found = RATE.match(http.get(path).headers["RateLimit"])
        assert found is not None
        remaining.append(int(found.group(2)))
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == 3


def test_fixed_window_limit_answers_429_with_retry_after() -> None:
    plugin = CloseApi(rate_limit=CloseRateLimit(limit=2, window=30.0))
    with (
        Sandbox(SandboxConfig(sizes={"close.user": 1}), plugins=[plugin]) as close,
        httpx.Client(base_url=close.url + "/api/v1", auth=(KEY, "")) as http,
    ):
        statuses = [http.get("user/").status_code for _ in range(3)]
        refused = http.get("user/")
    assert statuses == [200, 200, 429]
    assert refused.json() == {"error": refused.json()["error"]}
    found = RATE.match(refused.headers["RateLimit"])
    assert found is not None and found.group(2) == "0"
    assert 28 <= float(found.group(3)) <= 30
    assert refused.headers["Retry-After"] == "30"


def test_injected_429_carries_ratelimit_and_retry_after(close: Sandbox, http: httpx.Client) -> None:
    close.faults.configure(rate_limit=0.5, burst=1, retry_after=3)
    assert http.get("lead/").status_code == 200
    refused = http.get("lead/")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3"
    assert RATE.match(refused.headers["RateLimit"])
    assert "error" in refused.json()
    close.faults.reset()
    close.faults.add_rule(FaultRule(path_prefix="/api/v1/lead/", nth=1, status=503))
    assert http.get("lead/").json() == {"error": "An internal error occurred in the sandbox."}


def test_mutations_insert_update_and_delete(close: Sandbox, http: httpx.Client) -> None:
    before = get(http, "lead/", _limit=100, _order_by="date_created")["data"]
    rule = MutationRule("close.lead", after_request=close.log()[-1].number + 1, insert=2)
    close.faults.add_mutation(rule)
    get(http, "user/")  # the mutation runs after this request
    assert close.delete("close.lead", 1, where="tail") == [before[0]["id"]]
    updated = close.update("close.lead", [before[1]["id"]])[0]
    after = get(http, "lead/", _limit=100, _order_by="date_created")["data"]
    assert len(after) == 41
    assert after[-2]["date_created"] > before[-1]["date_created"]  # inserts are the newest
    assert before[0]["id"] not in ids({"data": after})
    changed = next(r for r in after if r["id"] == updated)
    assert changed["date_created"] == before[1]["date_created"]
    assert changed["date_updated"] > max(r["date_updated"] for r in before)


def test_stripe_and_close_entities_share_one_sandbox() -> None:
    sizes = {"customers": 3, "close.lead": 4}
    with Sandbox(SandboxConfig(sizes=sizes)) as both:  # the default plugins
        stripe = httpx.get(both.url + "/v1/customers", headers={"Authorization": f"Bearer {KEY}"})
        close = httpx.get(both.url + "/api/v1/lead/", auth=(KEY, ""))
        assert len(stripe.json()["data"]) == 3 and len(close.json()["data"]) == 4
        assert [e.entity for e in both.log()] == ["customers", "close.lead"]
        assert both.entities == ["close.lead", "customers"]
