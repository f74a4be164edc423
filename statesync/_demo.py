"""``statesync demo``: the whole loop on embedded defaults, no keys or network needed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from statesync._display import ChunkLines, status_table
from statesync._policy import ChunkPolicy, RetryPolicy

STRIPE_ENTITIES = ("customers", "invoices", "charges", "subscriptions", "products")


async def run_demo(db: Path, customers: int, console: Console) -> int:
    from statesync.adapters.local import LocalRunner
    from statesync.connectors.stripe import StripeConnector
    from statesync.destinations.sqlite import SQLiteDestination
    from statesync.sandbox import Sandbox, SandboxConfig
    from statesync.stores.sqlite import SQLiteStateStore

    sizes = {
        "customers": customers,
        "invoices": 180,
        "charges": 320,
        "subscriptions": 90,
        "products": 40,
    }
    config = SandboxConfig(sizes=sizes)
    with Sandbox(config) as sandbox:
        console.print(f"API emulator on {sandbox.url}; syncing into {db}")
        runner = LocalRunner(
            connector=StripeConnector(config.api_key, base_url=sandbox.url),
            store=SQLiteStateStore(db.with_name(db.name + ".state")),
            destination=SQLiteDestination(db),
            chunk_policy=ChunkPolicy(max_iterations=2, page_size=25),
            retry_policy=RetryPolicy(attempts=5, initial_delay=0.2),
            listeners=[ChunkLines(console)],
        )
        try:
            runner.install_signal_handlers()
            result = await runner.sync(STRIPE_ENTITIES)
            console.print(
                status_table(result.job_id, await runner.store.list_entities(result.job_id))
            )
        finally:
            await runner.connector.aclose()
            await runner.destination.aclose()
            await runner.store.aclose()
    return 0 if result.ok else 1
