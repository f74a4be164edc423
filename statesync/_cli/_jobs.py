"""Job commands: demo, run, resume, cancel, sandbox (status: :mod:`._status`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from statesync._cancel import cancel_job
from statesync._cli import _config
from statesync._cli._contract import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    command_error,
    emit,
    exit_for_outcomes,
    resume_hint,
)
from statesync._cli._display import ChunkLines, LeaseLines
from statesync._cli._open import open_destination, open_store
from statesync._cli._progress_display import ProgressDisplay
from statesync._cli._renamed import RenamedFlagsCommand
from statesync._cli._status import existing_store, status_table
from statesync._cli._validate import (
    NON_NEGATIVE_FLOAT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    check_dest,
    check_entities,
    check_job_id,
    check_namespace,
    check_store,
    check_tables,
)
from statesync._instances import Instance, resolve_instance
from statesync._listeners import LoggingListener
from statesync._models import SyncMode
from statesync._namespace import effective_namespace
from statesync._policy import ChunkPolicy, PolicySet, RetryPolicy
from statesync._sandbox_flags import NAMED_FAULTS, PAYLOAD_HELP
from statesync._status import job_status
from statesync.adapters.local import JobResult, LocalRunner
from statesync.errors import DestinationError, StatesyncError, StoreError, UnknownEntityError
from statesync.events import Listener
from statesync.stores._redis_budget import RedisBudgets

Display = ProgressDisplay | ChunkLines

T = TypeVar("T")

__all__ = ["EXIT_BUSY", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK"]
DEFAULT_STORE = "sqlite:///statesync-state.db"
DEFAULT_DEST = "sqlite:///statesync-data.db"
DEFAULT_LEASE_WAIT = 300.0


def _console() -> Console:
    console = Console(highlight=False)
    # Piped output (CI logs, files) has no width to fit; 80 columns would fold the tables.
    return console if console.is_terminal else Console(highlight=False, width=150)


def _fail(exc: StatesyncError, param: str | None = None) -> NoReturn:
    raise command_error(exc, param) from None


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(make())
    except StatesyncError as exc:
        _fail(exc)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--store",
            default=DEFAULT_STORE,
            show_default=True,
            callback=check_store,
            help="State store: sqlite:///path, redis://host:port/db or memory:.",
        ),
        click.option(
            "--dest",
            default=DEFAULT_DEST,
            show_default=True,
            callback=check_dest,
            help="Destination: sqlite:///path, postgresql://… or memory:.",
        ),
        click.option(
            "--max-iterations",
            type=POSITIVE_INT,
            default=10,
            show_default=True,
            help="API calls per chunk.",
        ),
        click.option("--page-size", type=POSITIVE_INT, default=100, show_default=True),
        click.option(
            "--parallel-entities",
            type=POSITIVE_INT,
            default=4,
            show_default=True,
            help="Entities synced at once (was --concurrency).",
        ),
        click.option(
            "--attempts",
            type=POSITIVE_INT,
            default=5,
            show_default=True,
            help="Tries per chunk before an entity fails.",
        ),
        click.option(
            "--wait-lease",
            "lease_wait",
            type=NON_NEGATIVE_FLOAT,
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
            "--pages-in-flight",
            type=POSITIVE_INT,
            default=1,
            show_default=True,
            help="Requests in flight per entity (offset pages, time windows; was "
            "--concurrency-pages).",
        ),
        click.option(
            "--target-chunk-seconds",
            type=POSITIVE_FLOAT,
            default=None,
            help="Size chunks by time: API calls per chunk follow the latency.",
        ),
        click.option(
            "--min-iterations",
            type=POSITIVE_INT,
            default=1,
            show_default=True,
            help="Fewest API calls per chunk when sizing by time.",
        ),
        click.option(
            "--rate-limit",
            type=POSITIVE_FLOAT,
            default=None,
            help="The provider's requests/s for this account; requests are paced.",
        ),
        click.option("--rate-burst", type=POSITIVE_INT, default=None, help="The provider's burst."),
        click.option(
            "--budget-redis",
            default=None,
            metavar="URL",
            help="Share the rate budget through Redis (processes, workers).",
        ),
        click.option(
            "--lease-ttl",
            type=POSITIVE_FLOAT,
            default=ChunkPolicy().lease_ttl,
            show_default=True,
            help="Seconds a dead worker's lease blocks workers on other hosts (renewed "
            "every third of it while the worker lives).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command(cls=RenamedFlagsCommand)
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
@click.option(
    "--entity",
    "entities",
    multiple=True,
    callback=check_entities,
    help="Repeat per entity (required unless --config names them).",
)
@click.option(
    "--option",
    "connector_flags",
    multiple=True,
    metavar="KEY=VALUE",
    help="A connector option (VALUE read as TOML: skip_cap=1000, fields.lead=['id']); "
    "stored with the job. Repeatable.",
)
@click.option("--mode", type=click.Choice([m.value for m in SyncMode]), default="full")
@click.option(
    "--job-id",
    default=None,
    callback=check_job_id,
    help="Reusing a finished job's id runs a new instance of it (recurring jobs).",
)
@click.option(
    "--namespace",
    default=None,
    callback=check_namespace,
    help="Destination namespace (PostgreSQL schema, SQLite table prefix); default: the "
    "connector's name. --namespace '' writes the shared, un-prefixed tables of older releases.",
)
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
    namespace: str | None,
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
        chosen = namespace if namespace is not None else prepared.namespace
        runner, display = _runner(prepared, namespace=chosen, new_job=True)
        async with _session(runner):
            # Stored with the job so `resume` rebuilds the same connector: no secrets here.
            instance = await runner.open_job(
                prepared.entities,
                mode=prepared.mode,
                job_id=prepared.job_id,
                params=prepared.params,
            )
            if not opts["as_json"]:
                verb = "job" if instance.created else "resuming job"
                number = f" instance {instance.number}" if instance.number > 1 else ""
                _console().print(f"{verb} {instance.job_id}{number}")
            return await _drive(
                runner, display, instance, retry_failed=False, opts=prepared.settings
            )

    sys.exit(_run(go))


@click.command(cls=RenamedFlagsCommand)
@click.argument("job_id")
@click.option("--retry-failed", is_flag=True, help="Resume entities that had failed too.")
@_common
def resume(job_id: str, retry_failed: bool, **opts: Any) -> None:
    """Resume a job (its latest instance) where it stopped, with the connector, policies
    and destination it ran with; flags given here override them."""
    ctx = click.get_current_context()

    async def go() -> int:
        store = existing_store(opts["store"], job_id)
        try:
            number, store_id = await resolve_instance(store, job_id)
            spec = await store.get_job(store_id)
        finally:
            await store.aclose()
        prepared = _config.prepare_resume(ctx, spec, opts)
        if prepared.overrides and not opts["as_json"]:
            shown = ", ".join("--" + o.replace("_", "-") for o in prepared.overrides)
            _console().print(f"overriding the job's stored settings: {shown}")
        runner, display = _runner(prepared)
        instance = Instance(job_id, number, store_id, created=False)
        async with _session(runner):
            return await _drive(
                runner, display, instance, retry_failed=retry_failed, opts=prepared.settings
            )

    sys.exit(_run(go))


def _runner(
    prepared: _config.Prepared, *, namespace: str | None = None, new_job: bool = False
) -> tuple[LocalRunner, Display | None]:
    """``namespace`` is where new jobs write (``None``: the connector's name; ``""``: the
    shared tables); with ``new_job`` every entity's table name in it is checked first."""
    return _build_runner(prepared, namespace, new_job, **prepared.settings)


def _build_runner(
    prepared: _config.Prepared,
    namespace: str | None,
    new_job: bool,
    *,
    store: str,
    dest: str,
    parallel_entities: int,
    attempts: int,
    lease_wait: float,
    policies: str | None,
    verbose: bool,
    budget_redis: str | None,
    as_json: bool,
    **chunk_flags: Any,
) -> tuple[LocalRunner, Display | None]:
    """The runner, built in an order that writes nothing until all is known good:
    policies, then the connector (its key), then the store (opened lazily) and last the
    destination (a SQLite destination creates its file)."""
    connector, entities = prepared.connector, prepared.entities
    document = _config.policy_document(prepared)
    if document is not None:
        from statesync._policy_config import policies_from_mapping

        source = _config.config_file(prepared)
        policy_set = policies_from_mapping(document, source=f"{source} [policies]")
    else:
        policy_set = _policies(policies, connector, entities, attempts, chunk_flags)
    console = _console()
    display: Display | None = None
    listeners: list[Listener] = [LeaseLines(Console(stderr=True, highlight=False))]
    if not as_json:
        display = ProgressDisplay(console) if console.is_terminal else ChunkLines(console)
        listeners.append(display)
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        listeners.append(LoggingListener(secrets=_config.secrets(prepared.options, os.environ)))
    built = _config.build_connector(prepared, os.environ)
    if new_job:
        check_tables(entities, effective_namespace(built.name, namespace))
    state = open_store(store)
    runner = LocalRunner(
        connector=built,
        store=state,
        destination=open_destination(dest),
        policies=policy_set,
        budgets=RedisBudgets.from_url(budget_redis) if budget_redis else None,
        parallel_entities=parallel_entities,
        listeners=listeners,
        lease_wait=lease_wait,
        namespace=namespace,
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
        pages_in_flight=flags["pages_in_flight"],
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


async def _drive(
    runner: LocalRunner,
    display: Display | None,
    instance: Instance,
    *,
    retry_failed: bool,
    opts: dict[str, Any],
) -> int:
    runner.install_signal_handlers()
    hint = resume_hint(instance.job_id, opts["store"], opts["dest"])
    live = display if isinstance(display, ProgressDisplay) else contextlib.nullcontext()
    try:
        with live:
            result = await runner.run(
                instance.store_id, retry_failed=retry_failed, instance=instance.number
            )
    except (StoreError, DestinationError) as exc:
        # An outage mid-run: nothing failed, the checkpoints hold; resume is the answer.
        raise CommandError(
            f"{exc}\ninterrupted; continue with: {hint}", EXIT_INTERRUPTED, type(exc).__name__
        ) from None
    code = exit_for_outcomes(result.outcomes(), result.interrupted)
    status = await job_status(runner.store, instance.job_id, instance=instance.number)
    if opts["as_json"]:
        emit(_run_payload(result, status.to_json(), code, hint))
        return code
    console = _console()
    console.print(status_table(status))
    for entity in result.entities:
        if entity.note:
            console.print(f"{entity.entity}: {entity.note}")
    if code == EXIT_INTERRUPTED:
        console.print(f"interrupted; continue with: {hint}", soft_wrap=True)
    return code


def _run_payload(result: JobResult, status: dict[str, Any], code: int, hint: str) -> dict[str, Any]:
    return {
        "job_id": status["job_id"],
        "instance": result.instance,
        "store_id": result.job_id,
        "exit_code": code,
        "interrupted": result.interrupted,
        "results": [
            {
                "entity": e.entity,
                "outcome": e.outcome.value,
                "state": e.state.value,
                "records": e.records,
                "chunks": e.chunks,
                "error": e.error,
                "error_kind": e.error_kind,
                "holder": e.holder.to_json() if e.holder else None,
                "note": e.note,
            }
            for e in result.entities
        ],
        "status": status,
        "resume": hint if code in (EXIT_INTERRUPTED, EXIT_FAILED) else None,
    }


@click.command()
@click.argument("job_id")
@click.option("--entity", "entities", multiple=True, help="Only these entities (repeatable).")
@click.option("--store", default=DEFAULT_STORE, show_default=True, callback=check_store)
@click.option("--dest", default=DEFAULT_DEST, show_default=True, callback=check_dest)
@click.option("--instance", type=POSITIVE_INT, default=None, help="Default: the latest.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cancel(
    job_id: str,
    entities: tuple[str, ...],
    store: str,
    dest: str,
    instance: int | None,
    as_json: bool,
) -> None:
    """Cancel a job's unfinished entities for good and drop what they staged."""

    async def go() -> int:
        st = existing_store(store, job_id)
        try:
            # Known job and entities before the destination is opened (and created).
            number, store_id = await resolve_instance(st, job_id, instance)
            known = [r.entity for r in await st.list_entities(store_id)]
            unknown = [e for e in entities if e not in known]
            if unknown:
                raise UnknownEntityError(job_id, unknown, known)
            destination = open_destination(dest)
            try:
                done = await cancel_job(st, destination, job_id, entities=entities, instance=number)
            finally:
                await destination.aclose()
        finally:
            await st.aclose()
        code = EXIT_BUSY if done.busy else EXIT_OK
        if as_json:
            emit(
                {
                    "job_id": job_id,
                    "instance": done.instance,
                    "cancelled": list(done.cancelled),
                    "already_final": list(done.already_final),
                    "busy": list(done.busy),
                    "exit_code": code,
                }
            )
        for entity in () if as_json else done.busy:
            _console().print(f"{entity}: a worker is driving it; stop that worker first")
        return code

    sys.exit(_run(go))


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
@click.option("--json", "as_json", is_flag=True, help="Announce the address as one JSON line.")
def sandbox(
    port: int,
    sizes: tuple[str, ...],
    configs: tuple[str, ...],
    faults: tuple[str, ...],
    as_json: bool,
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

    def ready(url: str) -> None:
        if as_json:
            click.echo(json.dumps({"url": url}), nl=True)
        else:
            click.echo(f"API emulator on {url}", err=True)

    serve(config, ready=ready)


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
@click.option("--json", "as_json", is_flag=True, help="Print each job's status as one JSON object.")
def demo(db: str, records: int, as_json: bool) -> None:
    """Sync several Stripe entities from the built-in emulator into a SQLite file."""
    from statesync._cli._demo import run_demo

    sys.exit(_run(lambda: run_demo(Path(db), records, _console(), as_json=as_json)))
