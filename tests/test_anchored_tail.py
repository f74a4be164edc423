"""The anchored walks' per-page shortcuts give what the record-by-record definitions give."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from statesync._models import Record
from statesync.connectors._anchored import Ordering, advanced, seen_test
from statesync.connectors.stripe import MAX_TIED_IDS, _Anchor


def _reference_advanced(
    last: object, seen: tuple[str, ...], fresh: list[dict[str, str]], ordering: Ordering
) -> tuple[object, tuple[str, ...]]:
    """The definition: walk every record, start over at each new key."""
    ids = list(seen)
    for item in fresh:
        value = item[ordering.key]
        if last is None or not ordering.same(value, last):
            last, ids = value, []
        ids.append(ordering.record_id(item))
    return last, tuple(ids)


def _reference_seen(
    last: object, seen: tuple[str, ...], item: dict[str, str], ordering: Ordering
) -> bool:
    if last is None:
        return False
    value = item[ordering.key]
    if ordering.same(value, last):
        return ordering.record_id(item) in seen
    return ordering.before(value, last)


def _stamp(second: int, naive: bool) -> str:
    moment = datetime.fromtimestamp(1_700_000_000 + second, UTC)
    return moment.replace(tzinfo=None).isoformat() if naive else moment.isoformat()


def test_shortcuts_match_the_definitions_on_random_pages() -> None:
    rng = random.Random(14)
    for descending in (False, True):
        ordering = Ordering("date", descending=descending)
        for _ in range(400):
            seconds = sorted(rng.choices(range(6), k=rng.randrange(0, 8)), reverse=descending)
            # Equal instants written differently (naive vs +00:00) must count as one key.
            page = [
                {"id": f"r{i}", "date": _stamp(s, rng.random() < 0.5)}
                for i, s in enumerate(seconds)
            ]
            last = None if rng.random() < 0.2 else _stamp(rng.randrange(6), rng.random() < 0.5)
            seen = tuple(f"r{i}" for i in range(rng.randrange(0, 4)))
            assert advanced(last, seen, page, ordering) == _reference_advanced(
                last, seen, page, ordering
            )
            test = seen_test(last, seen, ordering)
            assert [test(item) for item in page] == [
                _reference_seen(last, seen, item, ordering) for item in page
            ]


def _reference_stripe_after(anchor: _Anchor, records: list[Record]) -> _Anchor:
    created, ids = anchor.created, list(anchor.ids)
    for record in records:
        second = int(record.data["created"])
        if second != created:
            created, ids = second, []
        if record.id not in ids:
            ids.append(record.id)
    return _Anchor(created, tuple(ids[-MAX_TIED_IDS:]))


def test_stripe_anchor_tail_matches_the_definition() -> None:
    rng = random.Random(7)
    for _ in range(400):
        seconds = sorted(rng.choices(range(5), k=rng.randrange(1, 8)), reverse=True)
        records = [Record(id=f"cus_{rng.randrange(6)}", data={"created": s}) for s in seconds]
        anchor = _Anchor(rng.randrange(5), tuple(f"cus_{i}" for i in range(rng.randrange(3))))
        assert anchor.after(records) == _reference_stripe_after(anchor, records)
