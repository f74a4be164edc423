"""The GraphQL emulator at /graphql: Relay and offset lists, filters, auth, errors, faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from statesync.sandbox import FaultRule, GraphQLApi, Sandbox, SandboxConfig, default_plugins
from support.sandbox_lib import AUTH

TICKETS, ARTICLES = "graphql.tickets", "graphql.articles"
RELAY = """
query($first: Int, $after: String, $since: DateTime) {
  workspace(slug: "acme") {
    tickets(first: $first, after: $after, updatedSince: $since) {
      edges { cursor node { id updatedAt } }
      nodes { id }
      pageInfo { hasNextPage endCursor }
      totalCount
    }
  }
}"""


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sizes = {TICKETS: 23, ARTICLES: 17, "customers": 3}
    with Sandbox(SandboxConfig(sizes=sizes)) as running:
        yield running


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=AUTH, timeout=10) as http:
        yield http


def post(http: httpx.Client, query: str, **variables: Any) -> httpx.Response:
    return http.post("/graphql", json={"query": query, "variables": variables})


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def walk_relay(http: httpx.Client, first: int = 5, **variables: Any) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        page = data(post(http, RELAY, first=first, after=after, **variables))
        connection = page["workspace"]["tickets"]
        edge_ids = [e["node"]["id"] for e in connection["edges"]]
        assert edge_ids == [n["id"] for n in connection["nodes"]]
        ids.extend(edge_ids)
        if not connection["pageInfo"]["hasNextPage"]:
            return ids
        after = connection["pageInfo"]["endCursor"]


def oldest_first(sandbox: Sandbox, entity: str) -> list[str]:
    return [r["id"] for r in reversed(sandbox.snapshot(entity))]


def test_mounted_by_default_next_to_stripe(sandbox: Sandbox, client: httpx.Client) -> None:
    assert any(isinstance(p, GraphQLApi) for p in default_plugins())
    assert client.get("/v1/customers").status_code == 200
    assert sandbox.entities == ["customers", ARTICLES, TICKETS]


def test_relay_walk_returns_every_ticket_oldest_first(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    assert walk_relay(client) == oldest_first(sandbox, TICKETS)
    first = data(post(client, RELAY, first=5))["workspace"]["tickets"]
    assert first["totalCount"] == 23
    assert first["edges"][-1]["cursor"] == first["pageInfo"]["endCursor"]


@pytest.mark.parametrize(
    ("arguments", "variables"),
    [
        ("limit: $n, offset: $at", "$n: Int, $at: Int"),
        ("first: $n, skip: $at", "$n: Int, $at: Int"),
        ("take: $n, skip: $at", "$n: Int, $at: Int"),
    ],
)
def test_offset_lists_accept_each_argument_style(
    sandbox: Sandbox, client: httpx.Client, arguments: str, variables: str
) -> None:
    query = f"query({variables}) {{ articles({arguments}) {{ id }} }}"
    ids: list[str] = []
    for at in range(0, 20, 6):
        ids.extend(a["id"] for a in data(post(client, query, n=6, at=at))["articles"])
    assert ids == oldest_first(sandbox, ARTICLES)


def test_updated_since_filters_both_lists(sandbox: Sandbox, client: httpx.Client) -> None:
    changed = set(sandbox.update(TICKETS, 3, where="random"))
    since = max(r["updatedAt"] for r in sandbox.snapshot(TICKETS) if r["id"] not in changed)
    assert set(walk_relay(client, since=since)) >= changed
    later = "2027-01-01T00:00:00+00:00"  # after every generated date, before any update
    assert set(walk_relay(client, first=2, since=later)) == changed
    edited = set(sandbox.update(ARTICLES, 2, where="tail"))
    query = "query($s: DateTime) { articles(updatedSince: $s) { id updatedAt revision } }"
    rows = data(post(client, query, s=later))["articles"]
    assert {a["id"] for a in rows} == edited and all(a["revision"] > 0 for a in rows)


def test_auth_errors_are_graphql_shaped_and_masked(sandbox: Sandbox) -> None:
    url = f"{sandbox.url}/graphql"
    missing = httpx.post(url, json={"query": "{ articles { id } }"})
    assert missing.status_code == 401
    assert missing.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    wrong = httpx.post(
        url,
        json={"query": "{ articles { id } }"},
        headers={"Authorization": "Bearer sk_test_wrong_key_5678"},
    )
    assert wrong.status_code == 401
    assert wrong.json()["errors"][0]["message"] == "Invalid token: sk_test_****5678"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"query": "{ articles(limit: ) { id } }"}, 400, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "{ nope }"}, 400, "GRAPHQL_VALIDATION_FAILED"),
        (
            {"query": "query($n: Int) { articles(limit: $n) { id } }", "variables": {"n": "x"}},
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ({"query": "{ articles(limit: 500) { id } }"}, 200, "BAD_USER_INPUT"),
        ({"query": "{ articles(limit: 5, take: 5) { id } }"}, 200, "BAD_USER_INPUT"),
        ({"query": '{ workspace(slug: "x") { name } }'}, 200, "NOT_FOUND"),
        (
            {"query": '{ workspace(slug: "acme") { tickets(after: "bogus") { totalCount } } }'},
            200,
            "BAD_USER_INPUT",
        ),
        ({"variables": {}}, 400, "BAD_REQUEST"),
    ],
)
def test_errors_carry_codes(
    client: httpx.Client, payload: dict[str, Any], status: int, code: str
) -> None:
    response = client.post("/graphql", json=payload)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == code
    assert ("data" in body) is (status == 200)  # request errors never reach execution


def test_get_requests_and_bad_bodies(client: httpx.Client) -> None:
    got = client.get(
        "/graphql",
        params={"query": "query($n: Int) { articles(limit: $n) { id } }", "variables": '{"n": 2}'},
    )
    assert len(data(got)["articles"]) == 2
    broken = client.post(
        "/graphql", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert client.post("/graphqlx", json={"query": "{ articles { id } }"}).status_code == 404


def test_error_rule_answers_the_nth_request(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.faults.add_rule(GraphQLApi.error_rule(2, "Slow down", "RATE_LIMITED", retry_after=4))
    query = "{ articles(limit: 1) { id } }"
    assert data(post(client, query))["articles"]
    limited = post(client, query)
    assert limited.status_code == 200
    assert limited.json() == {
        "errors": [
            {"message": "Slow down", "extensions": {"code": "RATE_LIMITED", "retryAfter": 4}}
        ]
    }
    assert data(post(client, query))["articles"]
    assert [e.fault for e in sandbox.log()] == [None, "status", None]


def test_injected_statuses_and_rate_limits_are_graphql_errors(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    sandbox.faults.add_rule(FaultRule("/graphql", nth=1, status=503))
    answer = post(client, "{ articles { id } }")
    assert answer.status_code == 503
    assert answer.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    sandbox.faults.configure(rate_limit=1, burst=1, retry_after=3)
    post(client, "{ articles { id } }")
    limited = post(client, "{ articles { id } }")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert limited.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


def test_mutations_during_a_relay_walk(sandbox: Sandbox, client: httpx.Client) -> None:
    before = oldest_first(sandbox, TICKETS)
    page = data(post(client, RELAY, first=10))["workspace"]["tickets"]
    seen = [e["node"]["id"] for e in page["edges"]]
    sandbox.delete(TICKETS, [seen[-1]])  # the cursor's own record: still a valid cursor
    inserted = sandbox.insert(TICKETS, 4)
    deleted_unread = sandbox.delete(TICKETS, [before[15]])
    rest = walk_relay_from(client, page["pageInfo"]["endCursor"])
    assert seen + rest == [i for i in before if i not in deleted_unread] + inserted


def walk_relay_from(http: httpx.Client, after: str) -> list[str]:
    ids: list[str] = []
    while True:
        connection = data(post(http, RELAY, first=10, after=after))["workspace"]["tickets"]
        ids.extend(e["node"]["id"] for e in connection["edges"])
        if not connection["pageInfo"]["hasNextPage"]:
            return ids
        after = connection["pageInfo"]["endCursor"]


def test_data_is_deterministic_for_a_seed() -> None:
    def ids(seed: int) -> list[str]:
        with Sandbox(SandboxConfig(sizes={TICKETS: 5}, seed=seed)) as sandbox:
            return oldest_first(sandbox, TICKETS)

    assert ids(3) == ids(3) != ids(4)
