"""Anchored offsets for REST lists ordered oldest first by creation time (Close's idea).

The position of an offset walk is ``offset`` (records of the current query passed),
``window`` (a creation-time lower bound, Unix seconds inclusive, the query was narrowed
to after offsets shifted or passed the API's cap), ``last`` (the creation time of the
last record handed out, Unix seconds) and ``seen`` (the ids handed out at exactly
``last``). A record is *seen* when it was created before ``last``, or at ``last`` with
its id in ``seen``.

Every page after the first re-reads the record just before ``offset``. When it is seen,
the page joins the previous one exactly. When it is not, records before our offset were
deleted and offsets shifted: the walk re-opens at ``created >= last`` at offset 0 or, when
the API takes no lower bound, steps back (twice as far each time it still does not join,
as :func:`statesync.connectors._anchored.rewound` does), skipping what is seen. So
inserts and deletes anywhere lose nothing; a record deleted mid-sync may or may not come.
The seen test, the advance of ``last``/``seen`` and the step back are the ones every
anchored walk shares (:mod:`statesync.connectors._anchored`), over :func:`key` mappings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from statesync._models import JSON, FetchState
from statesync.connectors._anchored import Ask, Ordering, advanced, echoes, seen_test, stepped_back

Key = Mapping[str, Any]
"""A record's creation time (Unix seconds) and id, the list's order, as :func:`key` makes
it (the shape :class:`~statesync.connectors._anchored.Ordering` reads)."""

ORDER = Ordering("created", "id")
"""Oldest first by creation time, ties by id."""


def key(created: float, ident: str) -> Key:
    return {"created": created, "id": ident}


@frozen
class Anchor:
    """Where an anchored offset walk stands; round-trips through ``FetchState``."""

    offset: int = 0
    window: int | None = None
    last: float | None = None
    seen: tuple[str, ...] = ()
    base: int = 0
    """Records handed out before the current query began (for the progress total)."""
    back: int = 0
    """While stepping back after a shift (no lower bound to filter by): the last step."""
    head: str | None = None
    """The id of the list's first record, read at offset 0."""
    echo: int = 0
    """Answers running at later offsets that started with ``head`` (the server ignoring
    the offset; see :func:`statesync.connectors._anchored.echoes`)."""

    @classmethod
    def of(cls, state: FetchState) -> Anchor:
        meta = state.metadata
        window, last = meta.get("window"), meta.get("last")
        return cls(
            offset=state.offset or 0,
            window=None if window is None else int(window),
            last=None if last is None else float(last),
            seen=tuple(str(i) for i in meta.get("seen") or ()),
            base=int(meta.get("base") or 0),
            back=int(meta.get("back") or 0),
            head=None if meta.get("head") is None else str(meta.get("head")),
            echo=int(meta.get("echo") or 0),
        )

    def metadata(self) -> dict[str, JSON]:
        return {
            "window": self.window,
            "last": self.last,
            "seen": list(self.seen),
            "base": self.base,
            "back": self.back,
            "head": self.head,
            "echo": self.echo,
        }

    def reopened(self, processed: int, can_filter: bool, size: int = 1) -> Anchor:
        """A query at the last creation time handed out, offset 0; without a lower bound
        to filter by, the same query stepped back twice as far as the last step."""
        if not can_filter or self.last is None:
            offset, back = stepped_back(self.offset, self.back, size)
            return attrs.evolve(self, offset=offset, back=back)
        return attrs.evolve(
            self, offset=0, window=math.floor(self.last), base=processed - len(self.seen), back=0
        )

    def after(self, fresh: Sequence[Key], offset: int) -> Anchor:
        last, seen = advanced(self.last, self.seen, fresh, ORDER)
        return attrs.evolve(self, offset=offset, last=last, seen=seen, back=0)


@frozen
class Plan:
    anchor: Anchor
    skip: int
    limit: int

    @property
    def overlaps(self) -> bool:
        return self.skip > 0


def plan(
    anchor: Anchor,
    processed: int,
    size: int,
    max_size: int,
    cap: int | None,
    can_filter: bool,
) -> Plan:
    """Re-read one record before ``offset``; past ``cap``, narrow the query instead."""
    if anchor.offset == 0:
        return Plan(anchor, 0, size)
    skip = anchor.offset - 1
    if cap is not None and skip > cap:
        return Plan(anchor.reopened(processed, can_filter), 0, size)
    return Plan(anchor, skip, min(size + 1, max_size))


@frozen
class Absorbed:
    fresh: tuple[int, ...]
    """Indexes of the page's items not handed out before."""
    anchor: Anchor
    shifted: bool


def absorb(
    plan_: Plan,
    keys: Sequence[Key],
    processed: int,
    can_filter: bool,
    described: str | None = None,
) -> Absorbed:
    anchor = plan_.anchor
    first = ORDER.record_id(keys[0]) if keys else None
    # A server ignoring the offset answers its first page at every offset: the shared
    # walk's check stops it (NoProgressError) instead of walking on without records.
    echo = echoes(anchor.head, anchor.echo, Ask(plan_.skip, plan_.limit), first, described)
    if plan_.skip == 0 and first is not None:
        anchor = attrs.evolve(anchor, head=first)
    anchor = attrs.evolve(anchor, echo=echo)
    seen = seen_test(anchor.last, anchor.seen, ORDER)
    if plan_.overlaps and (not keys or not seen(keys[0])):
        return Absorbed((), anchor.reopened(processed, can_filter, plan_.limit), True)
    fresh = tuple(i for i, k in enumerate(keys) if not seen(k))
    after = anchor.after([keys[i] for i in fresh], plan_.skip + len(keys))
    return Absorbed(fresh, after, False)
