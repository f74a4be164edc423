"""``statesync diagram``: the machine's state diagram, or one entity's path through it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from statesync._cli._contract import emit
from statesync._cli._jobs import DEFAULT_STORE
from statesync.diagram import (
    FORMATS,
    REGENERATE,
    EntityTrace,
    Format,
    format_for,
    load_trace,
    render,
    write_machine_diagrams,
)
from statesync.errors import StatesyncError


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format (default: from -o's suffix, else mermaid). svg/png need Graphviz.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False),
    help=f"Regenerate the committed entity_sync.* files in this folder ({REGENERATE}).",
)
@click.option("--job", "job_id", default=None, help="Show this job's entity on the diagram.")
@click.option("--entity", default=None, help="The entity of --job to show.")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="State store URL.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print what was written (or the text) as JSON."
)
def diagram(
    fmt: str | None,
    output: str | None,
    write_dir: str | None,
    job_id: str | None,
    entity: str | None,
    store: str,
    as_json: bool,
) -> None:
    """Draw the entity-sync state machine (Mermaid, DOT, SVG or PNG).

    With --job and --entity, the entity's current state is highlighted and the path it
    took annotated: chunks done, attempts, the failing transition and its error kind.
    """
    try:
        if write_dir is not None:
            paths = [str(p) for p in write_machine_diagrams(write_dir)]
            if as_json:
                emit({"written": paths})
                return
            for path in paths:
                click.echo(f"wrote {path}")
            return
        trace = _trace(job_id, entity, store)
        chosen: Format = fmt if fmt is not None else format_for(output)  # type: ignore[assignment]
        content = render(chosen, trace)
        if as_json and output is None and chosen == "png":
            raise click.UsageError("a PNG under --json needs -o FILE")
        if as_json and output is None:
            emit({"format": chosen, "diagram": content.decode()})
            return
        _emit(content, output, binary=chosen == "png")
        if as_json:
            emit({"format": chosen, "written": [output]})
    except StatesyncError as exc:
        raise click.ClickException(str(exc)) from None


def _trace(job_id: str | None, entity: str | None, url: str) -> EntityTrace | None:
    if job_id is None and entity is None:
        return None
    if job_id is None or entity is None:
        raise click.UsageError("--job and --entity go together")

    _must_exist(url)

    async def read() -> EntityTrace:
        from statesync._cli._open import open_store

        store = open_store(url)
        try:
            return await load_trace(store, job_id, entity)
        finally:
            await store.aclose()

    return asyncio.run(read())


def _must_exist(url: str) -> None:
    """Reading a diagram must not leave an empty SQLite file behind a mistyped path."""
    from statesync._cli._open import _sqlite_path

    if url.startswith(("redis://", "rediss://", "unix://")) or url == "memory:":
        return
    if not _sqlite_path(url).exists():
        raise click.ClickException(f"no state store at {url}")


def _emit(content: bytes, output: str | None, *, binary: bool) -> None:
    if output is not None:
        Path(output).write_bytes(content)
        return
    if binary and sys.stdout.isatty():
        raise click.UsageError("PNG output is binary: pass -o FILE or redirect stdout")
    sys.stdout.flush()
    sys.stdout.buffer.write(content)
    sys.stdout.buffer.flush()
