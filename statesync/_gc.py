"""Finding and dropping staging tables that no job instance in the store owns.

A store flushed, expired or restored from an old snapshot forgets jobs whose full syncs
left staging tables in the destination; nothing would ever swap or drop them. A staging
table is an orphan when no entity of any job in the store maps to it (by the staging
name of its job instance) and the job instance it was registered for is unknown too.
It assumes the store is the only one writing into that destination.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from statesync._namespace import job_namespace, table_name
from statesync.destination import Destination, StagedTable
from statesync.destinations._names import staging_table
from statesync.errors import ConfigurationError, UnknownJobError
from statesync.store import StateStore

_ALL_JOBS = 1_000_000


async def find_orphan_staging(store: StateStore, destination: Destination) -> list[StagedTable]:
    """Staging tables in ``destination`` whose job instance ``store`` does not know."""
    # Listed before the jobs: a job created meanwhile cannot own a table already listed
    # (jobs are stored before their first staging table is made).
    staged = await destination.list_staging()
    if not staged:
        return []
    known = await _known_tables(store)
    orphans = []
    for table in staged:
        if table.table in known or await _instance_known(store, table):
            continue
        orphans.append(table)
    return orphans


async def collect_orphan_staging(
    store: StateStore, destination: Destination, *, dry_run: bool = False
) -> Sequence[StagedTable]:
    """Drop (unless ``dry_run``) every orphan staging table; return them."""
    orphans = await find_orphan_staging(store, destination)
    if not dry_run:
        for table in orphans:
            await destination.drop_staging(table)
    return orphans


async def _known_tables(store: StateStore) -> set[str]:
    tables: set[str] = set()
    for spec in await store.list_jobs(_ALL_JOBS):
        with contextlib.suppress(UnknownJobError):  # expired meanwhile
            namespace = job_namespace(spec)
            for rec in await store.list_entities(spec.job_id):
                with contextlib.suppress(ConfigurationError):
                    tables.add(staging_table(rec.entity, rec.destination_job))
                    # A namespaced job stages under its prefixed table name (SQLite).
                    name = table_name(rec.entity, namespace)
                    tables.add(staging_table(name, rec.destination_job))
    return tables


async def _instance_known(store: StateStore, table: StagedTable) -> bool:
    """Whether the registered job instance is in the store (missing from its job list)."""
    if table.job is None or table.entity is None:
        return False
    # A job instance is "job_id@created_at"; the time holds no "@".
    for job_id in {table.job, table.job.rsplit("@", 1)[0]}:
        try:
            rec = await store.get_entity(job_id, table.entity)
        except UnknownJobError:
            continue
        if rec.destination_job == table.job:
            return True
    return False
