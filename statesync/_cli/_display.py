"""What the CLI shows: a listener printing chunk lines, and job/entity tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from statesync._models import EntityRecord, SyncState
from statesync.events import (
    ChunkFinished,
    Event,
    LeaseTakeover,
    LeaseWait,
    RateLimitWait,
    RetryScheduled,
    TransitionEvent,
)

_STYLE = {
    SyncState.COMPLETE: "green",
    SyncState.FAILED: "bold red",
    SyncState.FETCHING: "yellow",
    SyncState.CHUNK_DONE: "cyan",
    SyncState.PENDING: "dim",
    SyncState.CANCELLED: "magenta",
}


class ChunkLines:
    """A listener that prints one line per finished chunk, retry and failure."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_event(self, event: Event) -> None:
        if isinstance(event, ChunkFinished):
            self.console.print(
                f"{event.entity:<16} chunk {event.chunk_index:>4}  {event.pages:>3} pages "
                f"{event.records:>6} records  {event.duration:6.2f}s  -> {event.state.value}",
                highlight=False,
            )
        elif isinstance(event, RetryScheduled):
            self.console.print(
                f"{event.entity:<16} chunk {event.chunk_index:>4}  attempt {event.attempt} "
                f"failed ({event.cause.kind}); retry in {event.delay:.1f}s",
                highlight=False,
            )
        elif isinstance(event, RateLimitWait):
            self.console.print(
                f"{event.entity:<16} waiting {event.delay:.1f}s for the API's rate limit",
                highlight=False,
            )
        elif isinstance(event, TransitionEvent) and event.dest is SyncState.FAILED:
            message = event.error.message if event.error else "no error recorded"
            self.console.print(f"{event.entity:<16} FAILED: {message}", highlight=False)


class LeaseLines:
    """A listener that prints lease waits (a countdown) and takeovers, for stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_event(self, event: Event) -> None:
        if isinstance(event, LeaseWait):
            until = "" if event.gives_up_in is None else f", giving up in {event.gives_up_in:.0f}s"
            self.console.print(
                f"{event.entity}: waiting for the lease held by {event.holder}; it lapses "
                f"in {event.expires_in:.0f}s unless its worker renews it{until}",
                highlight=False,
                soft_wrap=True,
            )
        elif isinstance(event, LeaseTakeover):
            self.console.print(
                f"{event.entity}: took the lease over from {event.previous}, whose process is gone",
                highlight=False,
            )


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = (now - when).total_seconds()
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def status_rows(records: Sequence[EntityRecord]) -> list[dict[str, Any]]:
    """Per-entity status as plain data (the ``--json`` output and the table's source)."""
    now = datetime.now(UTC)
    return [_row(r, now) for r in records]


def _row(r: EntityRecord, now: datetime) -> dict[str, Any]:
    end = r.updated_at if r.state.is_terminal else now
    elapsed = (end - r.created_at).total_seconds() if r.created_at and end else None
    rate = r.records / elapsed if elapsed and elapsed > 0 else None
    eta = None
    if rate and r.total_hint and not r.state.is_done and r.total_hint > r.records:
        eta = (r.total_hint - r.records) / rate
    return {
        "entity": r.entity,
        "state": r.state.value,
        "chunk": r.chunk_index,
        "records": r.records,
        "total": r.total_hint,
        "api_calls": r.api_calls,
        "attempts": r.attempts,
        "records_per_s": round(rate, 1) if rate is not None else None,
        "eta_s": round(eta, 1) if eta is not None else None,
        "time_in_state": _ago(r.state_since, now),
        "last_error": r.last_error.message if r.last_error else None,
        "last_error_kind": r.last_error.kind if r.last_error else None,
        "waiting": _waiting(r),
    }


def _waiting(r: EntityRecord) -> bool:
    """Waiting out a server-timed rate limit: the entity is not failing."""
    error = r.last_error
    return (
        r.state is SyncState.FETCHING
        and r.attempts > 0
        and error is not None
        and error.kind == "rate_limited"
        and error.retry_after is not None
    )


def status_table(job_id: str, records: Sequence[EntityRecord]) -> Table:
    table = Table(title=f"job {job_id}", title_justify="left")
    for col in (
        "entity",
        "state",
        "chunk",
        "records",
        "calls",
        "tries",
        "rec/s",
        "ETA",
        "in state",
    ):
        table.add_column(col, no_wrap=True)
    table.add_column("last error", overflow="fold")
    for rec, row in zip(records, status_rows(records), strict=True):
        style = _STYLE.get(rec.state, "")
        total = f"/{row['total']}" if row["total"] else ""
        state = "waiting (rate limit)" if row["waiting"] else row["state"]
        table.add_row(
            row["entity"], f"[{style}]{state}[/]", str(row["chunk"]),
            f"{row['records']}{total}", str(row["api_calls"]), str(row["attempts"]),
            f"{row['records_per_s']:,.0f}" if row["records_per_s"] else "-",
            f"{row['eta_s']:.0f}s" if row["eta_s"] is not None else "-",
            row["time_in_state"], row["last_error"] or "",
        )  # fmt: skip
    return table
