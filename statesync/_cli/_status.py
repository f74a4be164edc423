"""``statesync status``: a job's entities (or the recent jobs), as a table or JSON.

Both forms come from :func:`statesync.job_status`, so the CLI and a service see the same
value; ``--json`` prints :meth:`JobStatus.to_json`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from statesync._cli._config import describe
from statesync._cli._contract import command_error, emit, json_mode
from statesync._cli._open import open_store
from statesync._status import JobStatus, Liveness, job_status
from statesync._urls import check_store_url
from statesync.errors import ConfigurationError, StatesyncError, UnknownJobError
from statesync.store import StateStore

DEFAULT_STORE = "sqlite:///statesync-state.db"

_STYLE = {
    "complete": "green",
    "failed": "bold red",
    "fetching": "yellow",
    "chunk_done": "cyan",
    "pending": "dim",
    "cancelled": "magenta",
}


def console() -> Console:
    out = Console(highlight=False)
    # Piped output (CI logs, files) has no width to fit; 80 columns would fold the tables.
    return out if out.is_terminal else Console(highlight=False, width=150)


def store_url_option(value: str) -> str:
    try:
        return check_store_url(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--store") from None


def check_store(_: click.Context, __: click.Parameter, value: str) -> str:
    return store_url_option(value)


def existing_store(url: str, job_id: str) -> StateStore:
    """Open the store for a command on an existing job: a missing SQLite file is an
    unknown job, and is not created (a typo must leave nothing behind)."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        raise UnknownJobError(f"no job {job_id!r}: the store {str(path)!r} does not exist")
    return open_store(url)


def _sqlite_file(url: str) -> Path | None:
    if url == "memory:" or ("://" in url and not url.startswith("sqlite:")):
        return None
    return Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


def status_table(status: JobStatus) -> Table:
    title = f"job {status.job_id}"
    if status.instance > 1:
        title += f" (instance {status.instance})"
    table = Table(title=title, title_justify="left")
    for col in ("entity", "state", "chunk", "records", "calls", "tries", "rec/s", "ETA"):
        table.add_column(col, no_wrap=True)
    table.add_column("in state", no_wrap=True)
    table.add_column("last error", overflow="fold")
    for e in status.entities:
        row = e.to_json()
        style = _STYLE.get(e.state.value, "")
        total = f"/{e.total}" if e.total else ""
        state = f"[{style}]{e.state.value}[/]"
        if e.liveness is Liveness.STALLED:
            state += " [bold red](stalled)[/]"
        table.add_row(
            e.entity, state, str(e.chunk), f"{e.records}{total}", str(e.api_calls),
            str(e.attempts), f"{e.records_per_s:,.0f}" if e.records_per_s else "-",
            f"{e.eta_s:.0f}s" if e.eta_s is not None else "-", row["time_in_state"],
            row["last_error"] or "",
        )  # fmt: skip
    return table


@click.command()
@click.argument("job_id", required=False)
@click.option("--store", default=DEFAULT_STORE, show_default=True, callback=check_store)
@click.option(
    "--instance",
    type=click.IntRange(min=1),
    default=None,
    help="Which instance of a recurring job (default: the latest).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object).")
@click.option(
    "--dest", default=None, help="Also report staging tables no job owns (see statesync gc)."
)
def status(
    job_id: str | None, store: str, instance: int | None, as_json: bool, dest: str | None
) -> None:
    """Show a job's entities (or the recent jobs)."""
    try:
        asyncio.run(_status(job_id, store, instance, as_json or json_mode(), dest))
    except StatesyncError as exc:
        raise command_error(exc) from None


async def _status(
    job_id: str | None, store: str, instance: int | None, as_json: bool, dest: str | None
) -> None:
    orphans: list[str] = []
    if job_id is None:
        payload = await _jobs(store, as_json)
    else:
        st = existing_store(store, job_id)
        try:
            found = await job_status(st, job_id, instance=instance)
            described = describe(await st.get_job(found.store_id))
        finally:
            await st.aclose()
        payload = found.to_json()
        if described:
            payload["config"] = described
        if not as_json:
            console().print(status_table(found))
            if described:
                console().print(described, soft_wrap=True)
    if dest is not None:
        from statesync._cli._gc import orphan_lines

        orphans = await orphan_lines(store, dest)
        if not as_json:
            for line in orphans:
                click.echo(line)
    if as_json:
        if dest is not None:
            payload["orphans"] = orphans
        emit(payload)


async def _jobs(store: str, as_json: bool) -> dict[str, Any]:
    path = _sqlite_file(store)
    if path is not None and not path.exists():
        specs: list[Any] = []  # no store yet: no jobs, and no file created to say so
    else:
        st = open_store(store)
        try:
            specs = list(await st.list_jobs(20))
        finally:
            await st.aclose()
    if as_json:
        return {
            "jobs": [
                {
                    "store_id": s.job_id,
                    "connector": s.connector,
                    "entities": list(s.entities),
                    "mode": s.mode.value,
                    "created_at": s.created_at.isoformat() if s.created_at else None,
                }
                for s in specs
            ]
        }
    for spec in specs:
        click.echo(f"{spec.job_id}  {spec.connector}  {','.join(spec.entities)}")
    return {}
