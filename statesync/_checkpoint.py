"""Page checkpoints kept by the destination, in the transaction of the page they follow.

With a :class:`~statesync.destination.CheckpointingDestination` a page and the position
after it commit together, so the state store need not be written after every page:
the engine saves the entity record at the chunk's transitions (and when a chunk stops
early), and a chunk that begins adopts any later position the destination committed
(the process died mid-chunk). That takes one store round trip (a Redis script, or a
SQLite fsync) off every page.

A checkpoint extends exactly one stored version of the entity record, ``base``: the
store's record while the chunk was fetching. When the store has moved since (a restart
by reconciliation, an operator's trigger, a store restored from a snapshot of another
moment), the checkpoint belongs to a walk that no longer exists and is ignored: fetching
again from the store's own position is always safe (pages are upserted by id), adopting
a stale position is not.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from attrs import frozen

from statesync._converter import dumps, loads
from statesync._models import EntityRecord, FetchState
from statesync.connector import BaseConnector
from statesync.destination import CheckpointingDestination, Destination
from statesync.errors import StoreError

_log = logging.getLogger("statesync")


@frozen
class PageCheckpoint:
    """What landing a page changes in the entity record, and the version it extends."""

    base: int
    fetch_state: FetchState
    api_calls: int
    total_hint: int | None
    watermark: datetime | None

    @classmethod
    def of(cls, rec: EntityRecord) -> PageCheckpoint:
        return cls(rec.version, rec.fetch_state, rec.api_calls, rec.total_hint, rec.watermark)

    def changes(self) -> dict[str, Any]:
        """The record's fields as this checkpoint has them (a landed page resets attempts)."""
        return {
            "fetch_state": self.fetch_state,
            "api_calls": self.api_calls,
            "total_hint": self.total_hint,
            "watermark": self.watermark,
            "attempts": 0,
        }


def keeper(connector: BaseConnector, destination: Destination) -> CheckpointingDestination | None:
    """``destination`` when a chunk's pages carry their checkpoint into its transactions:
    it keeps checkpoints and the connector's walk can resume from one."""
    if connector.supports_resumable_fetching() and isinstance(
        destination, CheckpointingDestination
    ):
        return destination
    return None


def encode(rec: EntityRecord) -> str:
    return dumps(PageCheckpoint.of(rec))


def decode(raw: str | None, rec: EntityRecord) -> PageCheckpoint | None:
    """The checkpoint ``raw`` when it extends ``rec`` as stored; else ``None``."""
    if raw is None:
        return None
    try:
        found = loads(raw, PageCheckpoint)
    except StoreError as exc:
        # Unreadable (written by another release?): the store's own position is safe.
        _log.warning("ignoring the destination's checkpoint of %r: %s", rec.entity, exc)
        return None
    return found if found.base == rec.version else None
