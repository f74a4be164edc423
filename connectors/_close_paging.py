"""Offset pagination that never skips a record: an anchored overlap plus date windows.

Pages are ordered ascending by one date field (``date_created``, or ``date_updated`` in
incremental syncs). The position of a fetch is:

``offset``
    how many records of the current query we have passed;
``window``
    the lower date bound (inclusive) the query is restricted to, or ``None``;
``last``, ``seen``
    the date of the last record handed out and the ids handed out with exactly that date.

A record is *seen* when its date is before ``last``, or equal to it with its id in
``seen``. Each page after the first re-reads the record just before ``offset``: if the
page starts with a seen record, nothing between it and the new records can have been
missed, so the page joins on. If it does not, records before our offset disappeared
(deleted, or moved later by an update) and offsets shifted under us: the fetch does not
guess, it opens a window ``date >= last`` at offset 0, which contains every record not
yet seen. The same window is opened when the next ``_skip`` would pass Close's cap:
the configured one, or the one a 400 taught (``cap``, kept with the position, so the
entity's next windows and its resumes respect it). The seen test is the one every
anchored walk shares (:mod:`statesync.connectors._anchored`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from attrs import frozen

from statesync._models import JSON, FetchState
from statesync.connectors._anchored import Ask, Ordering, advanced, echoes, is_seen, seen_test

MAX_LIMIT = 100
"""The largest ``_limit`` Close accepts on list endpoints."""


def parse_date(value: str) -> datetime:
    """An ISO-8601 date; a naive one is UTC (comparing naive and aware would raise)."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@frozen
class Position:
    """Where a fetch stands; round-trips through ``FetchState`` (offset + metadata)."""

    offset: int = 0
    window: str | None = None
    last: str | None = None
    seen: tuple[str, ...] = ()
    base: int = 0
    """Records handed out before the window's query began (for the progress total)."""
    cap: int | None = None
    """The largest ``_skip`` the server accepted, learned from its 400, if it said."""
    head: str | None = None
    """The first record of the current query (read at offset 0)."""
    echo: int = 0
    """Answers running at a later offset that started with ``head`` (see ``_anchored``)."""

    @classmethod
    def of(cls, state: FetchState) -> Position:
        meta = state.metadata
        cap = meta.get("cap")
        return cls(
            offset=state.offset or 0,
            window=_optional_str(meta.get("window")),
            last=_optional_str(meta.get("last")),
            seen=tuple(str(i) for i in meta.get("seen") or ()),
            base=int(meta.get("base") or 0),
            cap=cap if isinstance(cap, int) and not isinstance(cap, bool) else None,
            head=_optional_str(meta.get("head")),
            echo=int(meta.get("echo") or 0),
        )

    def metadata(self) -> dict[str, JSON]:
        return {
            "window": self.window,
            "last": self.last,
            "seen": list(self.seen),
            "base": self.base,
            "cap": self.cap,
            "head": self.head,
            "echo": self.echo,
        }

    def is_seen(self, item: Mapping[str, Any], key: str) -> bool:
        return is_seen(self.last, self.seen, item, _ordering(key))

    def reopened(self, processed: int) -> Position:
        """A window at the last date handed out, starting over at offset 0."""
        base = processed - len(self.seen)
        return attrs.evolve(self, offset=0, window=self.last, base=base, echo=0)

    def after(self, fresh: Sequence[Mapping[str, Any]], key: str, offset: int) -> Position:
        """The position once ``fresh`` (in page order) has been handed out."""
        last, seen = advanced(self.last, self.seen, fresh, _ordering(key))
        return attrs.evolve(self, offset=offset, last=_optional_str(last), seen=seen)


def _ordering(key: str) -> Ordering:
    """Close lists ascending by a date field, ties by id."""
    return Ordering(key, "id", parse=_parse_any)


def _parse_any(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"not an ISO-8601 date: {value!r}")
    return parse_date(value)


@frozen
class Plan:
    """The request to send for a position."""

    position: Position
    skip: int
    limit: int

    @property
    def overlaps(self) -> bool:
        return self.skip > 0


def plan(position: Position, processed: int, page_size: int, skip_cap: int) -> Plan:
    """Re-read one record before ``offset`` to prove the page joins on; mind the cap
    (the configured one, or the smaller one the server taught)."""
    if position.offset == 0:
        return Plan(position, 0, page_size)
    skip = position.offset - 1
    if position.cap is not None:
        skip_cap = min(skip_cap, position.cap)
    if skip > skip_cap:
        return Plan(position.reopened(processed), 0, page_size)
    # One more than the page size, so the re-read record does not shrink the page,
    # within the API's maximum page.
    return Plan(position, skip, min(page_size + 1, MAX_LIMIT))


@frozen
class Absorbed:
    """What a page contributes: the records not seen before and the next position."""

    fresh: tuple[Mapping[str, Any], ...]
    position: Position
    has_more: bool


def absorb(
    plan_: Plan,
    items: Sequence[Mapping[str, Any]],
    has_more: bool,
    key: str,
    processed: int,
    described: str | None = None,
) -> Absorbed:
    pos = plan_.position
    first = str(items[0]["id"]) if items else None
    asked = Ask(plan_.skip, plan_.limit, plan_.overlaps)
    echo = echoes(pos.head, pos.echo, asked, first, described)
    test = seen_test(pos.last, pos.seen, _ordering(key))
    if plan_.overlaps and (not items or not test(items[0])):
        # Offsets shifted under us: restart from the last date handed out.
        return Absorbed((), pos.reopened(processed), True)
    fresh = tuple(item for item in items if not test(item))
    head = first if plan_.skip == 0 and first is not None else pos.head
    after = attrs.evolve(pos.after(fresh, key, plan_.skip + len(items)), head=head, echo=echo)
    return Absorbed(fresh, after, has_more and bool(items))


def _optional_str(value: JSON) -> str | None:
    return None if value is None else str(value)
