"""``statesync demo``: the whole loop on embedded defaults, no keys or network needed.

One emulator serves Stripe-, Close- and GraphQL-compatible APIs on loopback; three jobs,
one per connector, run at once into one SQLite file, through the real SDKs and clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from statesync._cli._contract import emit
from statesync._cli._display import ChunkLines, status_table
from statesync._cli._progress_display import ProgressDisplay
from statesync._policy import ChunkPolicy, RetryPolicy
from statesync._status import job_status
from statesync.events import Listener

STRIPE = ("customers", "invoices", "charges", "subscriptions", "products")
CLOSE = (
    "lead",
    "contact",
    "opportunity",
    "activity",
    "custom_field_lead",
    "custom_field_shared",
    "user",
)
GRAPHQL = ("tickets", "articles")

TICKETS = """
query Tickets($first: Int, $after: String, $since: DateTime) {
  workspace(slug: "acme") {
    tickets(first: $first, after: $after, updatedSince: $since) {
      edges { node { id title status updatedAt createdAt } }
      pageInfo { hasNextPage endCursor }
      totalCount
    }
  }
}"""
ARTICLES = """
query Articles($limit: Int, $offset: Int, $since: DateTime) {
  articles(limit: $limit, offset: $offset, updatedSince: $since) {
    id title updatedAt createdAt
  }
}"""


def _sizes(customers: int) -> dict[str, int]:
    return {
        "customers": customers, "invoices": 180, "charges": 320, "subscriptions": 90,
        "products": 40, "close.lead": 260, "close.contact": 200, "close.opportunity": 120,
        "close.activity_call": 150, "close.activity_email": 90, "close.custom_field_lead": 12,
        "close.custom_field_shared": 5, "close.user": 8, "graphql.tickets": 220,
        "graphql.articles": 150,
    }  # fmt: skip


def _connectors(url: str, key: str) -> list[tuple[Any, tuple[str, ...]]]:
    from statesync.connectors.close import CloseConnector
    from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity
    from statesync.connectors.stripe import StripeConnector

    graphql = GraphQLConnector(
        f"{url}/graphql",
        entities={
            "tickets": GraphQLEntity(
                TICKETS,
                ("workspace", "tickets"),
                updated_field="updatedAt",
                created_field="createdAt",
            ),
            "articles": GraphQLEntity(
                ARTICLES, ("articles",), updated_field="updatedAt", order_field="createdAt"
            ),
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    return [
        (StripeConnector(key, base_url=url), STRIPE),
        (CloseConnector(key, base_url=f"{url}/api/v1", entities=CLOSE), CLOSE),
        (graphql, GRAPHQL),
    ]


def _stop_all_on_signals(runners: list[Any]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: [r.request_stop() for r in runners])


async def run_demo(db: Path, customers: int, console: Console, *, as_json: bool = False) -> int:
    from statesync.adapters.local import LocalRunner
    from statesync.destinations.sqlite import SQLiteDestination
    from statesync.sandbox import Sandbox, SandboxConfig
    from statesync.stores.sqlite import SQLiteStateStore

    config = SandboxConfig(sizes=_sizes(customers))
    display = ProgressDisplay(console) if console.is_terminal else ChunkLines(console)
    listeners: list[Listener] = [] if as_json else [display]
    store = SQLiteStateStore(db.with_name(db.name + ".state"))
    destination = SQLiteDestination(db)
    with Sandbox(config) as sandbox:
        if not as_json:
            console.print(
                f"API emulator on {sandbox.url}; syncing Stripe, Close and GraphQL entities "
                f"into {db}"
            )
        runners = [
            LocalRunner(
                connector=conn,
                store=store,
                destination=destination,
                chunk_policy=ChunkPolicy(max_iterations=2, page_size=25),
                retry_policy=RetryPolicy(attempts=5, initial_delay=0.2),
                listeners=listeners,
            )
            for conn, _ in _connectors(sandbox.url, config.api_key)
        ]
        entities = [names for _, names in _connectors(sandbox.url, config.api_key)]
        try:
            for runner in runners:
                runner.install_signal_handlers()
            live: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if isinstance(display, ProgressDisplay) and not as_json:
                live = display
            with live:
                results = await asyncio.gather(
                    *(r.sync(names) for r, names in zip(runners, entities, strict=True))
                )
            if as_json:
                statuses = [(await job_status(store, r.job_id)).to_json() for r in results]
                emit({"ok": all(r.ok for r in results), "jobs": statuses})
                return 0 if all(r.ok for r in results) else 1
            for runner, result in zip(runners, results, strict=True):
                console.print(
                    status_table(
                        f"{result.job_id} ({runner.connector.name})",
                        await store.list_entities(result.job_id),
                    )
                )
        finally:
            for runner in runners:
                await runner.connector.aclose()
            await destination.aclose()
            await store.aclose()
    return 0 if all(r.ok for r in results) else 1
