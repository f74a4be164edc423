"""Job commands: demo, run, resume, status, sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from statesync._budget import RedisBudgets
from statesync._chunk import apply_trigger
from statesync._cli import _config
from statesync._display import ChunkLines, LeaseLines, status_rows, status_table
from statesync._lease import take_lease
from statesync._listeners import LoggingListener, ProgressDisplay
from statesync._models import EntityRecord, SyncMode
from statesync._open import open_destination, open_store
from statesync._policy import ChunkPolicy, PolicySet, RetryPolicy
from statesync._sandbox_flags import NAMED_FAULTS, PAYLOAD_HELP
from statesync.adapters.local import LocalRunner
from statesync.destination import Destination
from statesync.errors import StatesyncError
from statesync.events import Listener
from statesync.store import StateStore

Display = ProgressDisplay | ChunkLines

T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_BUSY = 0, 1, 3, 75
DEFAULT_STORE = "sqlite:///statesync-state.db"
DEFAULT_DEST = "sqlite:///statesync-data.db"
DEFAULT_LEASE_WAIT = 300.0


def _console() -> Console:
    console = Console(highlight=False)
    # Piped output (CI logs, files) has no width to fit; 80 columns would fold the tables.
    return console if console.is_terminal else Console(highlight=False, width=150)


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(make())
    except StatesyncError as exc:
        raise click.ClickException(str(exc)) from None


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--store",
            default=DEFAULT_STORE,
            show_default=True,
            help="State store: sqlite:///path, redis://host:port/db or memory:.",
        ),
        click.option(
            "--dest", default=DEFAULT_DEST, show_default=True, help="Destination: sqlite:///path."
        ),
        click.option(
            "--max-iterations", default=10, show_default=True, help="API calls per chunk."
        ),
        click.option("--page-size", default=100, show_default=True),
        click.option(
            "--concurrency", default=4, show_default=True, help="Entities synced at once."
        ),
        click.option(
            "--attempts",
            default=5,
            show_default=True,
            help="Tries per chunk before an entity fails.",
        ),
        click.option(
            "--wait-lease",
            "lease_wait",
            type=float,
            default=DEFAULT_LEASE_WAIT,
            show_default=True,
            help="Seconds to wait for an entity another live worker drives (a countdown "
            "on stderr), then exit 75; 0 exits 75 at once. A dead holder on this host is "
            "taken over at once.",
        ),
        click.option(
            "--policies",
            type=click.Path(exists=True, dir_okay=False),
            envvar="STATESYNC_POLICIES",
            help="Retry/chunk policy TOML file; replaces the policy flags above.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Log every event (stderr)."),
        click.option(
            "--concurrency-pages",
            type=int,
            default=1,
            show_default=True,
            help="Requests in flight per entity (offset pages, time windows).",
        ),
        click.option(
            "--target-chunk-seconds",
            type=float,
            default=None,
            help="Size chunks by time: API calls per chunk follow the latency.",
        ),
        click.option(
            "--min-iterations",
            type=int,
            default=1,
            show_default=True,
            help="Fewest API calls per chunk when sizing by time.",
        ),
        click.option(
            "--rate-limit",
            type=float,
            default=None,
            help="The provider's requests/s for this account; requests are paced.",
        ),
        click.option("--rate-burst", type=int, default=None, help="The provider's burst."),
        click.option(
            "--budget-redis",
            default=None,
            metavar="URL",
            help="Share the rate budget through Redis (processes, workers).",
        ),
        click.option(
            "--lease-ttl",
            type=float,
            default=ChunkPolicy().lease_ttl,
            show_default=True,
            help="Seconds a dead worker's lease blocks workers on other hosts (renewed "
            "every third of it while the worker lives).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command()
@click.option(
    "--connector",
    default=None,
    help="stripe (default), close, graphql, rest, an installed plugin, or module:factory.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Job config TOML: connector, entities, policies, store, destination.",
)
@click.option("--base-url", default=None, help="API base URL (e.g. the sandbox's).")
@click.option(
    "--graphql-config",
    type=click.Path(exists=True, dir_okay=False, resolve_path=True),
    default=None,
    help="TOML file of GraphQL entities (queries, list paths), for --connector graphql.",
)
@click.option("--entity", "entities", multiple=True, help="Repeat per entity.")
@click.option(
    "--option",
    "connector_flags",
    multiple=True,
    metavar="KEY=VALUE",
    help="A connector option (VALUE read as TOML: skip_cap=1000, fields.lead=['id']); "
    "stored with the job. Repeatable.",
)
@click.option("--mode", type=click.Choice([m.value for m in SyncMode]), default="full")
@click.option("--job-id", default=None)
@_common
def run(
    connector: str | None,
    config_path: str | None,
    base_url: str | None,
    graphql_config: str | None,
    entities: tuple[str, ...],
    connector_flags: tuple[str, ...],
    mode: str,
    job_id: str | None,
    **opts: Any,
) -> None:
    """Start a sync job. Keys come from environment variables ($STATESYNC_API_KEY unless
    the job config names another); flags override the --config file's settings."""

    ctx = click.get_current_context()

    async def go() -> int:
        prepared = _config.prepare_run(
            ctx, config_path, connector, base_url, graphql_config, entities, mode, job_id, opts
        )
        prepared = _config.with_options(prepared, connector_flags)
        runner, display = _runner(prepared)
        async with _session(runner):
            # Stored with the job so `resume` rebuilds the same connector: no secrets here.
            job = await runner.create_job(
                prepared.entities,
                mode=prepared.mode,
                job_id=prepared.job_id,
                params=prepared.params,
            )
            _console().print(f"job {job}")
            return await _drive(runner, display, job, retry_failed=False)

    sys.exit(_run(go))


@click.command()
@click.argument("job_id")
@click.option("--retry-failed", is_flag=True, help="Resume entities that had failed too.")
@_common
def resume(job_id: str, retry_failed: bool, **opts: Any) -> None:
    """Resume a job where it stopped (after Ctrl-C, a crash or a failure), with the
    connector, policies and destination it ran with; flags given here override them."""
    ctx = click.get_current_context()

    async def go() -> int:
        store = open_store(opts["store"])
        try:
            spec = await store.get_job(job_id)
        finally:
            await store.aclose()
        prepared = _config.prepare_resume(ctx, spec, opts)
        if prepared.overrides:
            shown = ", ".join("--" + o.replace("_", "-") for o in prepared.overrides)
            _console().print(f"overriding the job's stored settings: {shown}")
        runner, display = _runner(prepared)
        async with _session(runner):
            return await _drive(runner, display, job_id, retry_failed=retry_failed)

    sys.exit(_run(go))


def _runner(prepared: _config.Prepared) -> tuple[LocalRunner, Display]:
    return _build_runner(prepared, **prepared.settings)


def _build_runner(
    prepared: _config.Prepared,
    *,
    store: str,
    dest: str,
    concurrency: int,
    attempts: int,
    lease_wait: float,
    policies: str | None,
    verbose: bool,
    budget_redis: str | None,
    **chunk_flags: Any,
) -> tuple[LocalRunner, Display]:
    connector, entities = prepared.connector, prepared.entities
    # Built first: a bad option or a missing key fails before any store or job exists.
    built = _config.build_connector(prepared, os.environ)
    console = _console()
    display: Display = ProgressDisplay(console) if console.is_terminal else ChunkLines(console)
    listeners: list[Listener] = [display, LeaseLines(Console(stderr=True, highlight=False))]
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        listeners.append(LoggingListener(secrets=_config.secrets(prepared.options, os.environ)))
    document = _config.policy_document(prepared)
    if document is not None:
        from statesync._policy_config import policies_from_mapping

        policy_set = policies_from_mapping(
            document, source=f"{prepared.params.get('config', {}).get('file')} [policies]"
        )
    else:
        policy_set = _policies(policies, connector, entities, attempts, chunk_flags)
    runner = LocalRunner(
        connector=built,
        store=open_store(store),
        destination=open_destination(dest),
        policies=policy_set,
        budgets=RedisBudgets.from_url(budget_redis) if budget_redis else None,
        concurrency=concurrency,
        listeners=listeners,
        lease_wait=lease_wait,
    )
    return runner, display


def _policies(
    path: str | None,
    connector: str,
    entities: Sequence[str],
    attempts: int,
    flags: dict[str, Any],
) -> PolicySet:
    """The policy file when one is given; otherwise the command-line flags."""
    if path is not None:
        from statesync._policy_config import load_policies

        return load_policies(path, known={connector: set(entities)})
    chunk = ChunkPolicy(
        max_iterations=flags["max_iterations"],
        page_size=flags["page_size"],
        lease_ttl=flags["lease_ttl"],
        concurrency=flags["concurrency_pages"],
        target_duration=flags["target_chunk_seconds"],
        min_iterations=flags["min_iterations"],
        rate_limit=flags["rate_limit"],
        rate_burst=flags["rate_burst"],
    )
    return PolicySet(retry=RetryPolicy(attempts=attempts), chunk=chunk)


@contextlib.asynccontextmanager
async def _session(runner: LocalRunner) -> AsyncIterator[LocalRunner]:
    try:
        yield runner
    finally:
        await runner.connector.aclose()
        await runner.destination.aclose()
        await runner.store.aclose()


async def _drive(runner: LocalRunner, display: Display, job_id: str, *, retry_failed: bool) -> int:
    runner.install_signal_handlers()
    live = display if isinstance(display, ProgressDisplay) else contextlib.nullcontext()
    with live:
        result = await runner.run(job_id, retry_failed=retry_failed)
    console = _console()
    console.print(status_table(job_id, await runner.store.list_entities(job_id)))
    for entity in result.entities:
        if entity.note:
            console.print(f"{entity.entity}: {entity.note}")
    if result.interrupted:
        console.print(f"interrupted; continue with: statesync resume {job_id}")
        return EXIT_INTERRUPTED
    if any(e.note and "lease" in e.note for e in result.entities):
        return EXIT_BUSY
    return EXIT_OK if result.ok else EXIT_FAILED


@click.command()
@click.argument("job_id", required=False)
@click.option("--store", default=DEFAULT_STORE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--dest", default=None, help="Also report staging tables no job owns (see statesync gc)."
)
def status(job_id: str | None, store: str, as_json: bool, dest: str | None) -> None:
    """Show a job's entities (or the recent jobs)."""
    _status(job_id, store, as_json)
    if dest is not None:
        from statesync._cli._gc import orphan_lines

        for line in _run(lambda: orphan_lines(store, dest)):
            click.echo(line, err=as_json)


def _status(job_id: str | None, store: str, as_json: bool) -> None:
    async def go() -> None:
        st = open_store(store)
        try:
            if job_id is None:
                for spec in await st.list_jobs(20):
                    click.echo(f"{spec.job_id}  {spec.connector}  {','.join(spec.entities)}")
                return
            records = await st.list_entities(job_id)
            described = _config.describe(await st.get_job(job_id))
            if as_json:
                out: dict[str, Any] = {"job_id": job_id, "entities": status_rows(records)}
                if described:
                    out["config"] = described
                click.echo(json.dumps(out, indent=2))
            else:
                _console().print(status_table(job_id, records))
                if described:
                    _console().print(described)
        finally:
            await st.aclose()

    _run(go)


@click.command()
@click.argument("job_id")
@click.option("--entity", "entities", multiple=True, help="Only these entities (repeatable).")
@click.option("--store", default=DEFAULT_STORE, show_default=True)
@click.option("--dest", default=DEFAULT_DEST, show_default=True)
def cancel(job_id: str, entities: tuple[str, ...], store: str, dest: str) -> None:
    """Cancel a job's unfinished entities for good and drop what they staged."""

    async def go() -> int:
        st, destination = open_store(store), open_destination(dest)
        try:
            records = await st.list_entities(job_id)
            chosen = [r for r in records if not entities or r.entity in entities]
            busy = [r.entity for r in chosen if not await _cancel_one(st, destination, r)]
        finally:
            await destination.aclose()
            await st.aclose()
        for entity in busy:
            _console().print(f"{entity}: a worker is driving it; stop that worker first")
        return EXIT_BUSY if busy else EXIT_OK

    sys.exit(_run(go))


async def _cancel_one(store: StateStore, destination: Destination, rec: EntityRecord) -> bool:
    """Cancel one entity under its lease; False when another worker holds the lease."""
    if rec.state.is_final:
        return True
    lease = (await take_lease(store, rec.job_id, rec.entity, "statesync-cancel", 30.0)).lease
    if lease is None:
        return False
    try:
        await apply_trigger(store, rec.job_id, rec.entity, "cancel", lease=lease)
        await destination.discard(rec.destination_job, rec.entity)
    finally:
        await store.release_lease(lease)
    return True


def _sandbox_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name, (kind, text) in reversed(list(NAMED_FAULTS.items())):
        flag = "--" + name.replace("_", "-")
        command = click.option(flag, name, type=kind, default=None, help=text + ".")(command)
    command = click.option(
        "--faults",
        "faults",
        multiple=True,
        metavar="PAYLOAD",
        help=f"Faults, rate limits, rules and mutations ({PAYLOAD_HELP}): the body "
        'POST /_sandbox/faults takes, e.g. \'{"rate_limit": 5, "rate_limit_style": '
        '"github"}\' or \'{"mutations": [{"entity": "customers", '
        '"after_request": 3, "delete": 5}]}\'. Repeatable; kept across resets.',
    )(command)
    return click.option(
        "--config",
        "configs",
        multiple=True,
        metavar="PAYLOAD",
        help=f"Any sandbox setting ({PAYLOAD_HELP}), e.g. '{{\"seed\": 3}}'. Repeatable.",
    )(command)


@click.command()
@click.option("--port", default=12111, show_default=True)
@click.option("--size", "sizes", multiple=True, help="entity=count, repeatable.")
@_sandbox_options
def sandbox(
    port: int,
    sizes: tuple[str, ...],
    configs: tuple[str, ...],
    faults: tuple[str, ...],
    **named: Any,
) -> None:
    """Serve the API emulator on loopback until interrupted.

    Faults and rate limits start switched on with --faults and the named flags (the
    same settings POST /_sandbox/faults changes while it runs).
    """
    from statesync.sandbox import SandboxConfig, serve
    from statesync.sandbox._options import build_config

    base = SandboxConfig(port=port, sizes=_sizes(sizes)) if sizes else SandboxConfig(port=port)
    try:
        config = build_config(base, configs=configs, faults=faults, named=named)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    serve(config)


def _sizes(pairs: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        name, _, count = pair.partition("=")
        if not count.isdigit():
            raise click.BadParameter(f"{pair!r} is not entity=count", param_hint="--size")
        out[name] = int(count)
    return out


@click.command()
@click.option("--db", default="statesync-demo.db", show_default=True, type=click.Path())
@click.option("--records", default=250, show_default=True, help="Customers in the emulator.")
def demo(db: str, records: int) -> None:
    """Sync several Stripe entities from the built-in emulator into a SQLite file."""
    from statesync._demo import run_demo

    sys.exit(_run(lambda: run_demo(Path(db), records, _console())))
