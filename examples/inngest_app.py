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
``STATESYNC_DEST`` (``statesync-inngest.db``), ``STATESYNC_CHUNKS_PER_RUN`` (25),
``STATESYNC_MAX_ITERATIONS`` (10 pages a chunk), ``STATESYNC_PAGE_SIZE`` (100),
``STATESYNC_ACCOUNT_CONCURRENCY`` (4; ``none`` for no cap),
``STATESYNC_WAIT_TIMEOUT_HOURS`` (144, below the free plan's 7 days),
``STATESYNC_POLICIES`` (a policy TOML file, the same one ``statesync run --policies``
reads; it replaces the two sizing variables), ``HOST`` (127.0.0.1), ``PORT`` (8000).

Inngest's own variables: ``INNGEST_DEV`` is a boolean (``1``/``true``/``yes``/``on`` or
``0``/``false``/``no``/``off``) or the dev server's URL; anything else is refused, so
``INNGEST_DEV=0`` is cloud mode with signature checks, never dev mode. In cloud mode
``INNGEST_SIGNING_KEY`` is required and ``INNGEST_SIGNING_KEY_FALLBACK`` (the previous
key, during a rotation) is honoured; ``INNGEST_EVENT_KEY`` lets the app send events.
Behind a proxy or load balancer set ``INNGEST_SERVE_ORIGIN`` (e.g.
``https://sync.example.com``) and, if the path differs, ``INNGEST_SERVE_PATH``:
otherwise the URL the app registers is taken from the incoming request's host, which
is the proxy's view, not Inngest's.
"""

from __future__ import annotations

import os
from datetime import timedelta

import fastapi
import inngest
import inngest.fast_api
import uvicorn

from statesync import ChunkPolicy, JobSpec, PolicySet, RetryPolicy, load_policies
from statesync.adapters.inngest import sync_functions
from statesync.connector import BaseConnector
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.sqlite import SQLiteDestination
from statesync.errors import ConfigurationError
from statesync.stores.redis import RedisStateStore

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def stripe_connector(spec: JobSpec) -> BaseConnector:
    # The key comes from this process's environment, never from the job or its events.
    return StripeConnector(
        os.environ["STATESYNC_API_KEY"], base_url=os.getenv("STATESYNC_STRIPE_BASE_URL")
    )


def _int(name: str, default: int) -> int:
    raw = os.getenv(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None


def _flag(name: str) -> bool:
    """A boolean variable; unset is false. Not "any non-empty string": 0 is false."""
    raw = os.getenv(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _limit(name: str, default: int) -> int | None:
    raw = os.getenv(name, "").strip().lower()
    return None if raw == "none" else _int(name, default)


def _dev_mode() -> bool:
    """``INNGEST_DEV``: a boolean, or the dev server's URL (which means dev mode)."""
    raw = os.getenv("INNGEST_DEV", "").strip()
    return raw.startswith(("http://", "https://")) or _flag("INNGEST_DEV")


def inngest_client() -> inngest.Inngest:
    """The Inngest client: dev mode only when ``INNGEST_DEV`` says so, else signed."""
    dev = _dev_mode()
    if not dev and not os.getenv("INNGEST_SIGNING_KEY"):
        raise ConfigurationError(
            "INNGEST_SIGNING_KEY is required in cloud mode (set INNGEST_DEV=1 for the dev server)"
        )
    # The client reads INNGEST_SIGNING_KEY, INNGEST_SIGNING_KEY_FALLBACK and
    # INNGEST_EVENT_KEY itself; the keys never pass through this module's variables.
    return inngest.Inngest(app_id="statesync", is_production=not dev)


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
    client = inngest_client()
    functions = sync_functions(
        client,
        connectors={"stripe": stripe_connector},
        store=RedisStateStore.from_url(
            os.getenv("STATESYNC_REDIS_URL", "redis://127.0.0.1:6379/0"),
            prefix=os.getenv("STATESYNC_REDIS_PREFIX", "statesync"),
        ),
        destination=SQLiteDestination(os.getenv("STATESYNC_DEST", "statesync-inngest.db")),
        policies=_policies(),
        chunks_per_run=_int("STATESYNC_CHUNKS_PER_RUN", 25),
        account_concurrency=_limit("STATESYNC_ACCOUNT_CONCURRENCY", 4),
        wait_timeout=timedelta(hours=_int("STATESYNC_WAIT_TIMEOUT_HOURS", 144)),
    )
    app = fastapi.FastAPI(title="statesync on Inngest")
    inngest.fast_api.serve(
        app,
        client,
        functions,
        serve_origin=os.getenv("INNGEST_SERVE_ORIGIN") or None,
        serve_path=os.getenv("INNGEST_SERVE_PATH") or None,
    )
    return app


if __name__ == "__main__":
    uvicorn.run(create_app(), host=os.getenv("HOST", "127.0.0.1"), port=_int("PORT", 8000))
