"""The sandbox's generic REST API: credentials, errors, filters and each style's shape."""

from __future__ import annotations

import httpx
import pytest

from statesync.sandbox import MutationRule, Sandbox


def test_every_credential_form_is_accepted_and_a_wrong_key_is_a_401(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    key = sandbox.config.api_key
    bare = httpx.Client(base_url=sandbox.url, timeout=10)
    assert bare.get("/rest/link/issues", headers={"X-API-Key": key}).status_code == 200
    assert bare.get("/rest/link/issues", params={"api_key": key}).status_code == 200
    assert bare.get("/rest/link/issues", auth=(key, "")).status_code == 200
    wrong = bare.get("/rest/link/issues", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"code": "unauthorized", "message": "Bad credentials."}}
    bare.close()


@pytest.mark.parametrize(
    ("method", "path", "params", "status"),
    [
        ("GET", "/rest/links/issues", {}, 404),
        ("GET", "/rest/link/nothing", {}, 404),
        ("POST", "/rest/link/issues", {}, 404),
        ("GET", "/rest/search/issues", {}, 404),
        ("GET", "/rest/link/issues", {"per_page": 101}, 400),
        ("GET", "/rest/page/issues", {"page": 0}, 400),
        ("GET", "/rest/cursor/issues", {"after": "garbage"}, 400),
        ("GET", "/rest/offset/issues", {"since": "yesterday"}, 400),
    ],
)
def test_bad_requests_get_api_shaped_errors(
    client: httpx.Client, method: str, path: str, params: dict[str, str | int], status: int
) -> None:
    answer = client.request(method, path, params=params)
    assert answer.status_code == status
    assert set(answer.json()["error"]) == {"code", "message"}


def test_styles_list_the_same_records_oldest_first(sandbox: Sandbox, client: httpx.Client) -> None:
    expected = [r["id"] for r in reversed(sandbox.snapshot("rest.issues"))][:20]
    offset = client.get("/rest/offset/issues", params={"_start": 0, "_limit": 20})
    assert [r["id"] for r in offset.json()] == expected
    assert offset.headers["X-Total-Count"] == str(len(sandbox.snapshot("rest.issues")))
    page = client.get("/rest/page/issues", params={"page": 2, "per_page": 10}).json()
    assert [r["id"] for r in page["items"]] == expected[10:20]
    search = client.post("/rest/search/issues", json={"offset": 5, "limit": 5}).json()
    assert [r["id"] for r in search["hits"]] == expected[5:10] and search["has_more"] is True
    link = client.get("/rest/link/issues", params={"per_page": 10})
    assert 'rel="next"' in link.headers["Link"] and "page=2" in link.headers["Link"]
    nxt = client.get("/rest/next/issues", params={"limit": 10}).json()
    follow = client.get(nxt["next_page"]).json()
    assert [r["id"] for r in follow["data"]] == expected[10:20]


def test_filters_and_a_deleted_cursor_record(sandbox: Sandbox, client: httpx.Client) -> None:
    records = list(reversed(sandbox.snapshot("rest.issues")))
    lower, upper = records[10]["created"], records[30]["created"]
    window = client.get(
        "/rest/offset/issues", params={"created_gte": lower, "created_lt": upper, "_limit": 100}
    ).json()
    assert all(lower <= r["created"] < upper for r in window) and window
    first = client.get("/rest/cursor/issues", params={"limit": 5}).json()
    cursor = first["paging"]["next"]["after"]
    sandbox.faults.add_mutation(MutationRule("rest.issues", 0, delete=10, where="tail"))
    client.get("/rest/link/issues")  # the mutation runs after this request
    after = client.get("/rest/cursor/issues", params={"limit": 5, "after": cursor}).json()
    assert after["results"][0]["id"] == records[10]["id"]  # the cursor still positions
