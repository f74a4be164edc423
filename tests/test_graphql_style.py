"""Pagination style detection from a query's AST, table-driven: styles and error texts."""

from __future__ import annotations

import pytest

from statesync.connectors._graphql_style import PaginationStyle, RelayKeys, analyze
from statesync.errors import ConfigurationError

RELAY, OFFSET = PaginationStyle.RELAY, PaginationStyle.OFFSET

EDGES = """
query Tickets($first: Int, $after: String) {
  workspace(slug: "acme") {
    tickets(first: $first, after: $after) {
      edges { cursor node { id updatedAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""
NODES = """
query($first: Int!, $after: String) {
  workspace(slug: "acme") {
    tickets(first: $first, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } }
  }
}"""
NESTED_FRAGMENTS = """
query Issues($owner: String!, $size: Int, $cursor: String) {
  org: organization(login: $owner) {
    ... on Organization {
      repository(name: "cpython") { ...IssuePage }
    }
  }
}
fragment IssuePage on Repository {
  issues: pullRequests(first: $size, after: $cursor) {
    totalCount
    nodes { id updatedAt }
    info: pageInfo { more: hasNextPage end: endCursor }
  }
}"""
LIMIT_OFFSET = (
    "query($limit: Int, $offset: Int) { articles(limit: $limit, offset: $offset) { id } }"
)
TAKE_SKIP = "query($take: Int, $skip: Int) { articles(take: $take, skip: $skip) { id } }"
FIRST_SKIP = "query($n: Int, $s: Int) { shop { articles(first: $n, skip: $s) { id } } }"
LIMIT_SKIP = "query($l: Int, $s: Int) { articles(limit: $l, skip: $s) { id } }"
NO_PAGINATION = "query($owner: String) { repository(owner: $owner) { issues { id } } }"
PAGE_INFO_NO_AFTER = """
query($first: Int) {
  repository(owner: "o") {
    issues(first: $first) { nodes { id } pageInfo { hasNextPage endCursor } }
  }
}"""

STYLES = [
    ("relay-edges", EDGES, "workspace.tickets", RELAY, ("first", "after", "edges", "node")),
    ("relay-nodes", NODES, "workspace.tickets", RELAY, ("first", "after", "nodes", None)),
    (
        "nested-aliased-fragments",
        NESTED_FRAGMENTS,
        "org.repository.issues",
        RELAY,
        ("size", "cursor", "nodes", None),
    ),
    ("limit-offset", LIMIT_OFFSET, "articles", OFFSET, ("limit", "offset", None, None)),
    ("take-skip", TAKE_SKIP, "articles", OFFSET, ("take", "skip", None, None)),
    ("first-skip", FIRST_SKIP, "shop.articles", OFFSET, ("n", "s", None, None)),
    ("limit-skip", LIMIT_SKIP, "articles", OFFSET, ("l", "s", None, None)),
]


@pytest.mark.parametrize(
    ("query", "path", "style", "expected"), [c[1:] for c in STYLES], ids=[c[0] for c in STYLES]
)
def test_detected_style(
    query: str,
    path: str,
    style: PaginationStyle,
    expected: tuple[str, str, str | None, str | None],
) -> None:
    plan = analyze(query, tuple(path.split(".")), record_fields=["id"])
    p = plan.pagination
    assert plan.style is style
    assert (p.size_variable, p.position_variable, p.items, p.node_key) == expected
    assert plan.where == path


def test_aliases_are_read_back_by_response_key() -> None:
    plan = analyze(NESTED_FRAGMENTS, ("org", "repository", "issues"))
    assert plan.pagination.relay == RelayKeys("info", "more", "end")
    assert plan.pagination.total_key == "totalCount"
    assert plan.operation_name == "Issues"
    assert plan.required == {"owner"}


ERRORS = [
    (
        "no-pagination",
        NO_PAGINATION,
        "repository.issues",
        "no pagination found on field repository.issues: looked for Relay cursor pagination "
        "(`pageInfo { hasNextPage endCursor }` with first/after) and offset pagination "
        "(limit/offset, first/skip, take/skip or limit/skip bound to variables); "
        "its arguments are: none",
    ),
    (
        "page-info-without-after",
        PAGE_INFO_NO_AFTER,
        "repository.issues",
        "field repository.issues selects pageInfo (Relay cursor pagination) but binds no "
        "variable to its 'after' argument",
    ),
    (
        "literal-offset",
        "query($l: Int) { articles(limit: $l, offset: 0) { id } }",
        "articles",
        "its arguments are: limit: $l, offset (not a variable)",
    ),
    (
        "page-info-without-end-cursor",
        EDGES.replace("hasNextPage endCursor", "hasNextPage"),
        "workspace.tickets",
        "field workspace.tickets selects pageInfo but not endCursor",
    ),
    (
        "connection-without-records",
        EDGES.replace("edges { cursor node { id updatedAt } }", "totalCount"),
        "workspace.tickets",
        "selects neither `nodes { ... }` nor `edges { node { ... } }`",
    ),
    (
        "path-not-selected",
        EDGES,
        "workspace.issues",
        "path 'workspace.issues': workspace has no field 'issues' (it selects tickets)",
    ),
    (
        "path-at-nodes",
        NODES,
        "workspace.tickets.nodes",
        "point the path at the connection field itself",
    ),
    (
        "non-null-after",
        EDGES.replace("$after: String", "$after: String!"),
        "workspace.tickets",
        "variable $after is declared non-null, but the first page sends it as null",
    ),
    (
        "undeclared-variable",
        "query($l: Int) { articles(limit: $l, offset: $o) { id } }",
        "articles",
        "field articles uses variable $o, which the operation does not declare",
    ),
    (
        "mutation",
        "mutation($l: Int, $o: Int) { articles(limit: $l, offset: $o) { id } }",
        "articles",
        "the operation is a mutation, not a query",
    ),
    ("syntax", "query { articles(limit: ) { id } }", "articles", "the query is not valid GraphQL"),
    (
        "id-not-selected",
        "query($l: Int, $o: Int) { articles(limit: $l, offset: $o) { title } }",
        "articles",
        "records at articles do not select 'id' (they select title)",
    ),
    (
        "two-operations",
        f"{LIMIT_OFFSET} {TAKE_SKIP.replace('query(', 'query Other(')}",
        "articles",
        "the document holds 2 operations: name the one to run",
    ),
]


@pytest.mark.parametrize(
    ("query", "path", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_configuration_errors_say_what_and_where(query: str, path: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        analyze(query, tuple(path.split(".")), record_fields=["id"])
    assert message in str(info.value)


def test_since_variable_is_found_by_name_or_configuration() -> None:
    declared = EDGES.replace("$after: String)", "$after: String, $since: DateTime)")
    assert analyze(declared, ("workspace", "tickets")).since_variable == "since"
    assert analyze(EDGES, ("workspace", "tickets")).since_variable is None
    custom = EDGES.replace("$after: String)", "$after: String, $changed: DateTime)")
    plan = analyze(custom, ("workspace", "tickets"), since_variable="changed")
    assert plan.since_variable == "changed"
    with pytest.raises(ConfigurationError, match="since_variable 'changed' is not declared"):
        analyze(EDGES, ("workspace", "tickets"), since_variable="changed")
    required = EDGES.replace("$after: String)", "$after: String, $since: DateTime!)")
    with pytest.raises(ConfigurationError, match=r"\$since is declared non-null"):
        analyze(required, ("workspace", "tickets"))
