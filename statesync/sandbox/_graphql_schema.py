"""The GraphQL sandbox's schema, records and resolvers (executed by graphql-core).

Two lists over the shared dataset, so faults and mutations apply to them as to Stripe's:
``workspace(slug:) { tickets }`` is a Relay connection nested one level (cursor = the
record's stable position, so deletes never shift it), and ``articles`` is an offset list
accepting ``limit``/``offset``, ``first``/``skip`` or ``take``/``skip``. Both list oldest
first (by creation time, then id), so records inserted during a sync land after every
cursor and offset, and both filter with ``updatedSince``. ``tickets`` also takes a
creation-time window, ``createdGte`` (inclusive) and ``createdLt`` (exclusive), so a
client can walk it as concurrent windows with a cursor each (cursors stay valid across
windows: they are positions).
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from graphql import GraphQLError, GraphQLObjectType, GraphQLResolveInfo, GraphQLSchema, build_schema

from ._api import JSONDict
from ._dataset import Dataset, EntityStore

TICKETS = "graphql.tickets"
ARTICLES = "graphql.articles"
WORKSPACE_SLUG = "acme"
DEFAULT_PAGE = 20
MAX_PAGE = 100
UPDATED_BASE = 1_800_000_000
"""Updates stamp ``updated`` from here on: later than any generated ``created`` and still
deterministic (the n-th update of an entity gets ``UPDATED_BASE + n``)."""

SDL = """
scalar DateTime

type Query {
  workspace(slug: String!): Workspace
  articles(
    limit: Int, offset: Int, first: Int, skip: Int, take: Int, updatedSince: DateTime
  ): [Article!]!
}

type Workspace {
  slug: String!
  name: String!
  tickets(
    first: Int, after: String, updatedSince: DateTime, createdGte: DateTime, createdLt: DateTime
  ): TicketConnection!
}

type TicketConnection {
  edges: [TicketEdge!]!
  nodes: [Ticket!]!
  pageInfo: PageInfo!
  totalCount: Int!
}

type TicketEdge {
  cursor: String!
  node: Ticket!
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type Ticket {
  id: ID!
  title: String!
  status: String!
  priority: Int!
  assignee: String
  revision: Int!
  createdAt: DateTime!
  updatedAt: DateTime!
}

type Article {
  id: ID!
  title: String!
  author: String!
  wordCount: Int!
  revision: Int!
  createdAt: DateTime!
  updatedAt: DateTime!
}
"""

Info = GraphQLResolveInfo[Dataset]
"""What resolvers get: the request's context is the sandbox dataset."""

_SUBJECTS = ("Login fails", "Invoice missing", "Export is slow", "Webhook retries", "SSO setup")
_STATUSES = ("open", "open", "pending", "solved", "closed")
_PEOPLE = ("Ada", "Grace", "Alan", "Linus", "Barbara", None)
_TOPICS = ("Resumable syncs", "Cursor pagination", "Rate limits", "Idempotent upserts")


def iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_error(message: str, code: str = "BAD_USER_INPUT") -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


@attrs.frozen
class GraphQLRecordMaker:
    """Builds ``graphql.tickets`` / ``graphql.articles`` records (see ``RecordMaker``).

    Records hold their GraphQL fields as served plus the integer ``created``/``updated``
    the dataset sorts and filters on.
    """

    entity: str

    def make(self, index: int, created: int, rng: random.Random) -> JSONDict:
        token = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=16))
        record: JSONDict = {"created": created, "updated": created, "revision": 0}
        record["createdAt"] = record["updatedAt"] = iso(created)
        if self.entity == TICKETS:
            record["id"] = f"tkt_{token}"
            record["title"] = f"{rng.choice(_SUBJECTS)} #{index}"
            record["status"] = rng.choice(_STATUSES)
            record["priority"] = rng.randrange(1, 5)
            record["assignee"] = rng.choice(_PEOPLE)
        else:
            record["id"] = f"art_{token}"
            record["title"] = f"{rng.choice(_TOPICS)}, part {index}"
            record["author"] = rng.choice(_PEOPLE[:-1])
            record["wordCount"] = rng.randrange(300, 3000)
        return record

    def touch(self, record: JSONDict, revision: int) -> None:
        record["revision"] = revision
        record["updated"] = UPDATED_BASE + revision
        record["updatedAt"] = iso(record["updated"])
        if self.entity == TICKETS:
            record["status"] = _STATUSES[revision % len(_STATUSES)]


def build() -> GraphQLSchema:
    schema = build_schema(SDL)
    query, workspace = schema.query_type, schema.get_type("Workspace")
    assert query is not None and isinstance(workspace, GraphQLObjectType)  # both in SDL
    query.fields["workspace"].resolve = _workspace
    query.fields["articles"].resolve = _articles
    workspace.fields["tickets"].resolve = _tickets
    return schema


def _store(info: Info, entity: str) -> EntityStore:
    dataset = info.context
    if entity not in dataset:
        raise user_error(
            f"the sandbox serves no {entity}: add it to SandboxConfig.sizes", "NOT_FOUND"
        )
    return dataset.store(entity)


def _rows(
    store: EntityStore,
    since: str | None,
    created_gte: str | None = None,
    created_lt: str | None = None,
) -> list[tuple[int, JSONDict]]:
    """Live records oldest first with their stable positions, ``updated >= since`` and
    ``created_gte <= created < created_lt`` (each filter only when given)."""
    floor = _timestamp(since, "updatedSince") if since is not None else None
    gte = _timestamp(created_gte, "createdGte") if created_gte is not None else None
    lt = _timestamp(created_lt, "createdLt") if created_lt is not None else None
    rows = [(store.position(r["id"]), r) for r in reversed(store.snapshot())]
    return [
        (p, r)
        for p, r in rows
        if (floor is None or r["updated"] >= floor)
        and (gte is None or r["created"] >= gte)
        and (lt is None or r["created"] < lt)
    ]


def _timestamp(value: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise user_error(f"{name} is not an ISO 8601 date-time: {value!r}") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _page_size(value: int | None, name: str) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not 1 <= value <= MAX_PAGE:
        raise user_error(f"{name} must be between 1 and {MAX_PAGE}, got {value}")
    return value


def _workspace(_root: object, _info: Info, slug: str) -> JSONDict:
    if slug != WORKSPACE_SLUG:
        raise user_error(f"Could not resolve to a Workspace with the slug {slug!r}.", "NOT_FOUND")
    return {"slug": slug, "name": "Acme Inc."}


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"{TICKETS}:{position}".encode()).decode()


def _position(cursor: str) -> int:
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    entity, _, position = decoded.partition(":")
    if entity != TICKETS or not position.isdigit():
        raise user_error(f"after is not a cursor of this connection: {cursor!r}")
    return int(position)


def _tickets(_workspace: JSONDict, info: Info, **args: Any) -> JSONDict:
    size = _page_size(args.get("first"), "first")
    rows = _rows(
        _store(info, TICKETS),
        args.get("updatedSince"),
        args.get("createdGte"),
        args.get("createdLt"),
    )
    after = args.get("after")
    rest = rows if after is None else [(p, r) for p, r in rows if p > _position(after)]
    edges = [{"cursor": _cursor(p), "node": r} for p, r in rest[:size]]
    page_info = {
        "hasNextPage": len(rest) > size,
        "hasPreviousPage": len(rest) < len(rows),
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
    }
    nodes = [e["node"] for e in edges]
    return {"edges": edges, "nodes": nodes, "pageInfo": page_info, "totalCount": len(rows)}


def _one(args: dict[str, Any], names: Sequence[str]) -> int | None:
    given = [name for name in names if args.get(name) is not None]
    if len(given) > 1:
        raise user_error(f"give only one of {', '.join(given)}")
    return args[given[0]] if given else None


def _articles(_root: object, info: Info, **args: Any) -> list[JSONDict]:
    size = _page_size(_one(args, ("limit", "first", "take")), "the page size")
    start = _one(args, ("offset", "skip")) or 0
    if start < 0:
        raise user_error(f"offset must not be negative, got {start}")
    rows = _rows(_store(info, ARTICLES), args.get("updatedSince"))
    return [r for _, r in rows[start : start + size]]
