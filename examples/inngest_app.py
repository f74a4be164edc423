"""A FastAPI app serving statesync's Inngest functions (Stripe → SQLite, state in Redis).

Run it against the Inngest dev server and the built-in API emulator::

    ./scripts/setup.sh                                   # once: .venv with every extra
    .venv/bin/statesync sandbox --port 12111 &           # a Stripe-compatible emulator
    export STATESYNC_API_KEY=sk_test_statesync_sandbox
    export STATESYNC_STRIPE_BASE_URL=http://127.0.0.1:12111
    export INNGEST_DEV=1                                 # dev mode: no signing key needed
    .venv/bin/python examples/inngest_app.py             # serves http://127.0.0.1:8000/api/inngest
    npx inngest-cli@latest dev -u http://127.0.0.1:8000/api/inngest   # UI on :8288

Then request a job (the dev server takes any event key)::

    curl -X POST http://127.0.0.1:8288/e/dev -H 'content-type: application/json' -d '{
      "name": "statesync/job.requested",
      "data": {"connector": "stripe", "entities": ["customers", "invoices"], "job_id": "nightly"}
    }'

The dev server's UI shows the job run, one ``statesync: entity`` run per entity and
their ``sync-{entity}-chunk-{n}`` steps; the data lands in ``$STATESYNC_DEST``. Send the
same event with ``"retry_failed": true`` to resume failed entities. Run the script with
the venv's Python, not ``uvicorn examples.inngest_app:app`` from the repository root:
that would import the source folder ``statesync/`` instead of the installed layout.

Environment: ``STATESYNC_API_KEY`` (read per step, never stored or sent in events),
``STATESYNC_STRIPE_BASE_URL`` (unset: api.stripe.com), ``STATESYNC_REDIS_URL``
(``redis://127.0.0.1:6379/0``), ``STATESYNC_REDIS_PREFIX`` (``statesync``),
``STATESYNC_DEST`` (``statesync-inngest.db``), ``STATESYNC_CHUNKS_PER_RUN`` (200),
``STATESYNC_MAX_ITERATIONS`` (10 pages a chunk), ``STATESYNC_PAGE_SIZE`` (100),
``STATESYNC_ACCOUNT_CONCURRENCY`` (4), ``STATESYNC_POLICIES`` (a policy TOML file, the
same one ``statesync run --policies`` reads; it replaces the two sizing variables),
``PORT`` (8000). In production leave
``INNGEST_DEV`` unset and set ``INNGEST_SIGNING_KEY`` and ``INNGEST_EVENT_KEY``.
"""

from __future__ import annotations

import os

import fastapi
import inngest
import inngest.fast_api
import uvicorn

from statesync import ChunkPolicy, JobSpec, PolicySet, RetryPolicy, load_policies
from statesync.adapters.inngest import sync_functions
from statesync.connector import BaseConnector
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.stores.redis import RedisStateStore


def stripe_connector(spec: JobSpec) -> BaseConnector:
    # The key comes from this process's environment, never from the job or its events.
    return StripeConnector(
        os.environ["STATESYNC_API_KEY"], base_url=os.getenv("STATESYNC_STRIPE_BASE_URL")
    )


def _int(name: str, default: int) -> int:
    return int(os.getenv(name, str(default)))


def _policies() -> PolicySet:
    """The same policy file the local runner reads (``$STATESYNC_POLICIES``), if any."""
    path = os.getenv("STATESYNC_POLICIES")
    if path:
        return load_policies(path)
    return PolicySet(
        retry=RetryPolicy(attempts=5, initial_delay=1, max_delay=60),
        chunk=ChunkPolicy(
            max_iterations=_int("STATESYNC_MAX_ITERATIONS", 10),
            page_size=_int("STATESYNC_PAGE_SIZE", 100),
        ),
    )


def create_app() -> fastapi.FastAPI:
    client = inngest.Inngest(app_id="statesync", is_production=not os.getenv("INNGEST_DEV"))
    functions = sync_functions(
        client,
        connectors={"stripe": stripe_connector},
        store=RedisStateStore.from_url(
            os.getenv("STATESYNC_REDIS_URL", "redis://127.0.0.1:6379/0"),
            prefix=os.getenv("STATESYNC_REDIS_PREFIX", "statesync"),
        ),
        destination=SQLiteDestination(os.getenv("STATESYNC_DEST", "statesync-inngest.db")),
        policies=_policies(),
        chunks_per_run=_int("STATESYNC_CHUNKS_PER_RUN", 200),
        account_concurrency=_int("STATESYNC_ACCOUNT_CONCURRENCY", 4),
    )
    app = fastapi.FastAPI(title="statesync on Inngest")
    inngest.fast_api.serve(app, client, functions)
    return app


app = create_app()

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=_int("PORT", 8000))
