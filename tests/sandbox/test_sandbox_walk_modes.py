"""Walk modes over real HTTP: a hidden ``_skip`` cap, ignored filters, vanishing cursors,
backdated inserts; switched from ``POST /_sandbox/faults`` or the sandbox's config."""

from __future__ import annotations

import httpx

from statesync.sandbox import Sandbox, SandboxConfig
from support.sandbox_lib import API_KEY, AUTH

SIZES = {"customers": 30, "close.lead": 50, "graphql.articles": 20}


def test_a_hidden_skip_cap_answers_closes_400_and_reset_clears_it() -> None:
    with Sandbox(SandboxConfig(sizes=SIZES)) as sb, httpx.Client(base_url=sb.url) as http:
        assert http.post("/_sandbox/faults", json={"skip_cap": 10}).json()["skip_cap"] == 10
        leads = "/api/v1/lead/"
        assert http.get(leads, params={"_skip": 10}, auth=(API_KEY, "")).status_code == 200
        refused = http.get(leads, params={"_skip": 11}, auth=(API_KEY, ""))
        assert refused.status_code == 400
        assert refused.json() == {
            "error": "The maximum _skip for this resource is 10. Narrow the query, for "
            "example with a date_created range, to page deeper."
        }
        http.post("/_sandbox/reset")
        assert http.get(leads, params={"_skip": 11}, auth=(API_KEY, "")).status_code == 200


def test_ignored_parameters_are_dropped_but_logged_as_sent() -> None:
    config = SandboxConfig(sizes=SIZES, faults={"ignore_params": ["created", "query"]})
    with Sandbox(config) as sb, httpx.Client(base_url=sb.url, headers=AUTH) as http:
        page = http.get("/v1/customers", params={"limit": 100, "created[lt]": 1}).json()
        assert len(page["data"]) == 30  # the filter would have matched nothing
        query = 'date_created >= "2100-01-01"'
        leads = http.get("/api/v1/lead/", params={"query": query}, auth=(API_KEY, "")).json()
        assert leads["data"]
        assert sb.log()[0].query["created[lt]"] == "1"


def test_a_deleted_cursor_is_resource_missing_and_the_cursor_mutation_deletes_it() -> None:
    config = SandboxConfig(sizes=SIZES)
    with Sandbox(config) as sb, httpx.Client(base_url=sb.url, headers=AUTH) as http:
        http.post("/_sandbox/faults", json={"vanished_cursors": True})
        cursor = http.get("/v1/customers", params={"limit": 5}).json()["data"][-1]["id"]
        assert http.post("/_sandbox/mutate", json={"entity": "customers", "cursor": True}).json()[
            "deleted"
        ] == [cursor]
        gone = http.get("/v1/customers", params={"starting_after": cursor})
        assert gone.status_code == 400
        error = gone.json()["error"]
        assert (error["code"], error["param"]) == ("resource_missing", "starting_after")
        never = http.get("/v1/customers", params={"starting_after": "cus_never"})
        assert never.status_code == 400  # the API's own answer, unchanged


def test_backdated_inserts_land_behind_and_among_the_records() -> None:
    with Sandbox(SandboxConfig(sizes=SIZES)) as sb:
        oldest = min(r["created"] for r in sb.snapshot("graphql.articles"))
        faults = {"entity": "graphql.articles", "insert": 2, "insert_where": "tail"}
        with httpx.Client(base_url=sb.url) as http:
            behind = http.post("/_sandbox/mutate", json=faults).json()["inserted"]
            among = http.post("/_sandbox/mutate", json={**faults, "insert_where": "random"})
        rows = sb.snapshot("graphql.articles")
        assert len(rows) == 24
        assert all(r["created"] < oldest for r in rows if r["id"] in behind)
        order = [(r["created"], r["id"]) for r in rows]
        assert order == sorted(order, reverse=True)  # still served in order
        assert among.json()["inserted"]
