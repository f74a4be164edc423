"""Anchored offset walks: offset pagination that neither skips nor repeats a record while
the list changes under it. Shared by the Close and GraphQL connectors (pure, no I/O).

The list must come in a stable order: by one *order key* (ascending, or descending),
ties in any fixed order. A walk's position is an :class:`Anchor`:

``offset``
    how many records of the list the walk has passed;
``last``, ``seen``
    the order key of the last record handed out and the ids handed out with exactly
    that key. A record is *seen* when it sorts before ``last``, or at ``last`` with its
    id in ``seen``: in a sorted list the seen records are a prefix.
``head``
    the id of the first record of the list, read at offset 0 (an answer at a later
    offset that starts with it means the server ignored the offset);
``back``
    while re-positioning, how far the last step went back;
``echo``
    answers running at a later offset that started with ``head``: two, and the walk
    stops with :class:`~statesync.errors.NoProgressError` instead of walking the list
    again and again at every offset.

Each page after the first re-reads the record just before ``offset`` (:func:`ask`). When
that record is seen, nothing between it and the page can have been missed: the page
joins on and its unseen records are handed out (:func:`absorb`). Inserts behind the
walk shift the list forward: the page then starts with more seen records, which are
dropped. Deletes behind shift it back: the page starts with an unseen record, which is
a *shift*. A connector re-positions then, either with a filter (Close reopens the query
at ``key >= last``) or, without one, by stepping back (:func:`rewound`): offsets halve
their distance to the seen prefix's end in a few requests, and the page that starts
with a seen record joins on again. Planned concurrent pages are judged the same way.

Token in, token out: ``ask(anchor)`` says what to request, ``absorb(anchor, ask, items)``
turns the answer into the records to hand out and the next anchor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from attrs import frozen

from statesync._models import JSON
from statesync.errors import MalformedResponseError, NoProgressError

Item = Mapping[str, Any]


def order_value(raw: object) -> Any:
    """A comparable form of an order key: numbers, ISO 8601 dates (naive ones are UTC),
    else the string itself. Raises ``ValueError`` for what cannot be ordered."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"not an order key: {raw!r}")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            return raw
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise ValueError(f"not an order key: {raw!r}")


@frozen
class Ordering:
    """How the list is sorted: by ``key`` (``descending`` or not), records keyed by ``id``."""

    key: str
    id: str = "id"
    descending: bool = False
    parse: Callable[[object], Any] = order_value

    def record_id(self, item: Item) -> str:
        return str(item[self.id])

    def before(self, value: object, last: object) -> bool:
        """Whether a record keyed ``value`` sorts strictly before one keyed ``last``."""
        a, b = self.parse(value), self.parse(last)
        return bool(a > b) if self.descending else bool(a < b)

    def same(self, value: object, last: object) -> bool:
        return bool(self.parse(value) == self.parse(last))


def is_seen(last: JSON, seen: Sequence[str], item: Item, ordering: Ordering) -> bool:
    """Whether ``item`` was handed out already (or sorts where handed-out records are)."""
    return seen_test(last, seen, ordering)(item)


def seen_test(last: JSON, seen: Sequence[str], ordering: Ordering) -> Callable[[Item], bool]:
    """:func:`is_seen` for many items of one page: ``last`` is parsed once, not per item."""
    if last is None:
        return lambda item: False
    bound, ids, parse, key = ordering.parse(last), frozenset(seen), ordering.parse, ordering.key
    descending = ordering.descending

    def test(item: Item) -> bool:
        value = parse(item[key])
        if value == bound:
            return ordering.record_id(item) in ids
        return bool(value > bound) if descending else bool(value < bound)

    return test


def advanced(
    last: JSON, seen: Sequence[str], fresh: Sequence[Item], ordering: Ordering
) -> tuple[JSON, tuple[str, ...]]:
    """``last`` and ``seen`` once ``fresh`` (in list order) has been handed out.

    Only the page's tail matters: the run of records sharing the last one's key (and,
    when the whole page shares the key ``last`` already had, the ids seen before it).
    """
    if not fresh:
        return last, tuple(seen)
    parse, key = ordering.parse, ordering.key
    final = parse(fresh[-1][key])
    start = len(fresh) - 1
    while start > 0 and parse(fresh[start - 1][key]) == final:
        start -= 1
    if start == 0 and last is not None and parse(last) == final:
        ids = list(seen)
    else:
        last, ids = fresh[start][key], []
    ids += (ordering.record_id(item) for item in fresh[start:])
    return last, tuple(ids)


@frozen
class Anchor:
    """Where an anchored walk stands; round-trips through ``FetchState`` (offset +
    metadata under :data:`METADATA_KEYS`)."""

    offset: int = 0
    last: JSON = None
    seen: tuple[str, ...] = ()
    head: str | None = None
    back: int = 0
    echo: int = 0
    """Answers running that started with ``head`` at a later offset."""

    @classmethod
    def of(cls, offset: int | None, metadata: Mapping[str, JSON]) -> Anchor:
        head = metadata.get("head")
        return cls(
            offset=offset or 0,
            last=metadata.get("last"),
            seen=tuple(str(i) for i in metadata.get("seen") or ()),
            head=None if head is None else str(head),
            back=int(metadata.get("back") or 0),
            echo=int(metadata.get("echo") or 0),
        )

    def metadata(self) -> dict[str, JSON]:
        return {
            "last": self.last,
            "seen": list(self.seen),
            "head": self.head,
            "back": self.back,
            "echo": self.echo,
        }

    def is_seen(self, item: Item, ordering: Ordering) -> bool:
        return is_seen(self.last, self.seen, item, ordering)


METADATA_KEYS = ("last", "seen", "head", "back", "echo")
ECHO_LIMIT = 2
"""Answers at later offsets starting with the list's first record before the walk stops."""


@frozen
class Ask:
    """The request for a position: ``skip`` records, then up to ``limit``.

    ``overlaps``: the first record answered is the re-read one before the offset.
    """

    skip: int
    limit: int
    overlaps: bool = False


def ask(anchor: Anchor, page_size: int, max_limit: int) -> Ask:
    """Re-read one record before the offset, to prove the page joins on.

    A position with an offset but nothing handed out to compare with (a checkpoint
    taken by plain offsets) goes on from its offset as it is.
    """
    if anchor.offset == 0 or anchor.last is None:
        return Ask(anchor.offset, min(page_size, max_limit))
    # One more than the page size, so the re-read record does not shrink the page.
    return Ask(anchor.offset - 1, min(page_size + 1, max_limit), overlaps=True)


def ask_ahead(offset: int, page_size: int, max_limit: int) -> Ask:
    """What a page planned at ``offset`` asks, before the pages ahead of it landed: the
    same as :func:`ask` will for the walk once they have (it re-reads one record)."""
    if offset == 0:
        return Ask(0, min(page_size, max_limit))
    return Ask(offset - 1, min(page_size + 1, max_limit), overlaps=True)


def plan_ahead(asked: Ask, count: int, page_size: int, max_limit: int) -> list[int]:
    """The offsets of the ``count`` pages after ``asked`` when each comes back full."""
    offsets: list[int] = []
    nxt = asked
    while len(offsets) < count:
        offset = nxt.skip + nxt.limit
        offsets.append(offset)
        nxt = ask_ahead(offset, page_size, max_limit)
    return offsets


@frozen
class Absorbed:
    """What an answer contributes: records not seen before, and the next anchor.

    ``shifted`` says the answer does not join on (records before the offset vanished):
    nothing was handed out and the connector must re-position (:func:`rewound`).
    """

    fresh: tuple[Item, ...]
    anchor: Anchor
    has_more: bool
    shifted: bool = False


def absorb(
    anchor: Anchor,
    asked: Ask,
    items: Sequence[Item],
    has_more: bool,
    ordering: Ordering,
    described: str | None = None,
) -> Absorbed:
    """The answer ``items`` to ``asked`` at ``anchor``, judged against what was seen."""
    try:
        return _absorb(anchor, asked, items, has_more, ordering, described)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponseError(
            f"a record lacks a usable {ordering.key!r} or {ordering.id!r} to order it by ({exc})",
            request=described,
        ) from None


def _absorb(
    anchor: Anchor,
    asked: Ask,
    items: Sequence[Item],
    has_more: bool,
    ordering: Ordering,
    described: str | None,
) -> Absorbed:
    first = ordering.record_id(items[0]) if items else None
    echo = echoes(anchor.head, anchor.echo, asked, first, described)
    if asked.overlaps and (not items or not anchor.is_seen(items[0], ordering)):
        return Absorbed((), anchor, True, shifted=True)
    head = anchor.head
    if asked.skip == 0 and items:
        head = ordering.record_id(items[0])
    test = seen_test(anchor.last, anchor.seen, ordering)
    fresh = tuple(item for item in items if not test(item))
    last, seen = advanced(anchor.last, anchor.seen, fresh, ordering)
    moved = Anchor(asked.skip + len(items), last, seen, head, back=0, echo=echo)
    return Absorbed(fresh, moved, has_more and bool(items))


def echoes(
    head: str | None, echo: int, asked: Ask, first: str | None, described: str | None
) -> int:
    """Answers running at a later offset that start with the list's first record
    (``head``); raises :class:`NoProgressError` at :data:`ECHO_LIMIT`.

    Backdated inserts can put the first record at a later offset once; twice running,
    it is the server answering its first page whatever the offset.
    """
    if not asked.skip or first is None or first != head:
        return 0
    if echo + 1 >= ECHO_LIMIT:
        raise NoProgressError(
            f"answers at offsets up to {asked.skip} start with the list's first record "
            f"({head!r}): the server ignores the offset",
            request=described,
        )
    return echo + 1


def rewound(anchor: Anchor, page_size: int) -> Anchor:
    """The anchor stepped back after a shift, twice as far as the step before."""
    offset, back = stepped_back(anchor.offset, anchor.back, page_size)
    return attrs.evolve(anchor, offset=offset, back=back)


def stepped_back(offset: int, back: int, page_size: int) -> tuple[int, int]:
    """``offset`` stepped back after a shift, and the step: twice as far as the step
    before (``back``), at least a page. Every anchored walk re-positions by this rule."""
    back = max(page_size, back * 2)
    return max(0, offset - back), back
