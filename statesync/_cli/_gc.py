"""``statesync gc``: drop staging tables no job in the store owns (and report them)."""

from __future__ import annotations

import json

import click

from statesync._cli._open import open_destination, open_store
from statesync._gc import collect_orphan_staging, find_orphan_staging
from statesync.destination import StagedTable


def describe(table: StagedTable) -> str:
    if table.job is None:
        return f"{table.table} (job instance not recorded)"
    return f"{table.table} (job {table.job!r}, entity {table.entity!r})"


async def orphan_lines(store_url: str, dest_url: str) -> list[str]:
    """What ``status --dest`` adds: one line per orphan staging table, and the remedy."""
    store, destination = open_store(store_url), open_destination(dest_url)
    try:
        orphans = await find_orphan_staging(store, destination)
    finally:
        await destination.aclose()
        await store.aclose()
    if not orphans:
        return []
    lines = [f"orphan staging table: {describe(t)}" for t in orphans]
    lines.append(f"drop them with: statesync gc --store {store_url} --dest {dest_url}")
    return lines


@click.command()
@click.option("--store", required=True, help="The state store that owns the jobs.")
@click.option("--dest", required=True, help="The destination to clean.")
@click.option("--dry-run", is_flag=True, help="List what would be dropped; drop nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gc(store: str, dest: str, dry_run: bool, as_json: bool) -> None:
    """Drop staging tables whose job instance the store does not know.

    They are left behind when a store is flushed, expires its jobs or is restored from
    an earlier snapshot. Only run it with the one store that writes into DEST.
    """
    from statesync._cli._jobs import _run

    async def go() -> list[StagedTable]:
        st, destination = open_store(store), open_destination(dest)
        try:
            return list(await collect_orphan_staging(st, destination, dry_run=dry_run))
        finally:
            await destination.aclose()
            await st.aclose()

    orphans = _run(go)
    if as_json:
        rows = [{"table": t.table, "job": t.job, "entity": t.entity} for t in orphans]
        click.echo(json.dumps({"dry_run": dry_run, "orphans": rows}, indent=2))
        return
    verb = "would drop" if dry_run else "dropped"
    for table in orphans:
        click.echo(f"{verb} {describe(table)}")
    if not orphans:
        click.echo("no orphan staging tables")
