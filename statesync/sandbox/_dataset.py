"""Deterministic, precomputed, mutable record stores.

Records are kept oldest-first (ascending ``(created, id)``) so that inserts of
newer records are plain appends and the id->index dict never shifts; APIs serve
newest-first by walking the list backwards.  Every record's JSON is encoded
once and cached, so a page is a ``b",".join`` of cached bytes.  Deleted
records become tombstones that keep their position, so they still work as
pagination cursors.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import attrs

from ._api import JSONDict, RecordMaker

Where = Literal["head", "tail", "random"]

BASE_CREATED = 1_700_000_000
DEFAULT_STEP = 61  # seconds between neighbouring records; some pairs share a timestamp


class UnknownEntityError(KeyError):
    """Raised for an entity name that is not in the dataset."""


class UnknownRecordError(KeyError):
    """Raised for a record id that the entity never had."""


def _created_for(index: int, step: int) -> int:
    # index * 3 // 4 repeats every 4th value, which gives ties on ``created``
    # so that the id tie-break of the sort order is exercised.
    return BASE_CREATED + (index * 3 // 4) * step


def _encode(record: JSONDict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


@attrs.frozen
class Page:
    """A slice of encoded records, already in served (newest-first) order."""

    items: list[bytes]
    has_more: bool


class EntityStore:
    """All records of one entity; every public method is thread-safe."""

    def __init__(
        self, name: str, maker: RecordMaker, seed: int, size: int, step: int = DEFAULT_STEP
    ) -> None:
        self.name = name
        self._step = step
        self._maker = maker
        self._seed = seed
        self._lock = threading.RLock()
        self._records: list[JSONDict] = []
        self._encoded: list[bytes] = []
        self._created: list[int] = []
        self._alive: list[bool] = []
        self._index: dict[str, int] = {}
        self._live = 0
        self._generated = 0
        self._revision = 0
        self._version = 0
        self._last_served: str | None = None
        self._rng = random.Random(f"{seed}:{name}:mutations")
        self._append(self._generate(range(size), lambda i: _created_for(i, step)))

    def _generate(self, indexes: range, created: Callable[[int], int]) -> list[JSONDict]:
        records = []
        for index in indexes:
            rng = random.Random(f"{self._seed}:{self.name}:{index}")
            records.append(self._maker.make(index, created(index), rng))
        self._generated = max(self._generated, indexes.stop)
        records.sort(key=lambda r: (r["created"], r["id"]))
        return records

    def _append(self, records: Sequence[JSONDict]) -> None:
        for record in records:
            self._index[record["id"]] = len(self._records)
            self._records.append(record)
            self._encoded.append(_encode(record))
            self._created.append(record["created"])
            self._alive.append(True)
        self._live += len(records)

    def __len__(self) -> int:
        return self._live

    @property
    def version(self) -> int:
        """Grows with every insert, update and delete: a key for caches of derived views."""
        return self._version

    def position(self, record_id: str) -> int:
        """Ascending index of a record, live or deleted."""
        try:
            return self._index[record_id]
        except KeyError:
            raise UnknownRecordError(record_id) from None

    def get(self, record_id: str) -> bytes | None:
        """The encoded record, or ``None`` if it is unknown or deleted."""
        with self._lock:
            index = self._index.get(record_id)
            if index is None or not self._alive[index]:
                return None
            return self._encoded[index]

    def bounds(self, gte: int | None, gt: int | None, lte: int | None, lt: int | None) -> range:
        """Ascending index range matching ``created`` filters, by bisection."""
        with self._lock:
            lo, hi = 0, len(self._created)
            if gte is not None:
                lo = max(lo, bisect.bisect_left(self._created, gte))
            if gt is not None:
                lo = max(lo, bisect.bisect_right(self._created, gt))
            if lte is not None:
                hi = min(hi, bisect.bisect_right(self._created, lte))
            if lt is not None:
                hi = min(hi, bisect.bisect_left(self._created, lt))
            return range(lo, max(lo, hi))

    def page_older(self, window: range, limit: int) -> Page:
        """Newest-first page from the top of ``window`` (the ``starting_after`` walk)."""
        with self._lock:
            items: list[bytes] = []
            index = window.stop - 1
            while index >= window.start and len(items) < limit:
                if self._alive[index]:
                    items.append(self._encoded[index])
                    self._last_served = self._records[index]["id"]
                index -= 1
            has_more = any(self._alive[i] for i in range(index, window.start - 1, -1))
            return Page(items, has_more)

    def page_newer(self, window: range, limit: int) -> Page:
        """The ``limit`` records just above ``window.start`` (the ``ending_before`` walk)."""
        with self._lock:
            items: list[bytes] = []
            index = window.start
            while index < window.stop and len(items) < limit:
                if self._alive[index]:
                    items.append(self._encoded[index])
                index += 1
            has_more = any(self._alive[i] for i in range(index, window.stop))
            items.reverse()
            return Page(items, has_more)

    def snapshot(self) -> list[JSONDict]:
        """Live records as served (newest first), as independent copies."""
        with self._lock:
            pairs = zip(self._encoded, self._alive, strict=True)
            return [json.loads(data) for data, alive in reversed(list(pairs)) if alive]

    def delete_last_served(self) -> list[str]:
        """Delete the record the last newest-first page ended with (a client's next
        ``starting_after``), if it is still there; returns its id, or nothing."""
        with self._lock:
            found = self._last_served
            if found is None or not self._alive[self._index[found]]:
                return []
            return self.delete([found])

    def insert(self, count: int, where: Where = "head") -> list[str]:
        """Add records: strictly newer than every existing one (``head``), or backdated,
        before every one (``tail``) or among them (``random``), as an import would."""
        if where != "head" and self._records:
            return self._insert_behind(count, where)
        with self._lock:
            newest = self._created[-1] if self._created else BASE_CREATED
            first = self._generated
            records = self._generate(
                range(first, first + count), lambda i: newest + (i - first + 1) * self._step
            )
            self._append(records)
            self._version += 1
            return [r["id"] for r in records]

    def _insert_behind(self, count: int, where: Where) -> list[str]:
        with self._lock:
            oldest = self._created[0]
            first = self._generated

            def created(i: int) -> int:
                if where == "tail":
                    return oldest - (first + count - i) * self._step
                return self._created[self._rng.randrange(len(self._created))]

            records = self._generate(range(first, first + count), created)
            for record in records:
                at = bisect.bisect_right(
                    [(c, r["id"]) for c, r in zip(self._created, self._records, strict=True)],
                    (record["created"], record["id"]),
                )
                self._records.insert(at, record)
                self._encoded.insert(at, _encode(record))
                self._created.insert(at, record["created"])
                self._alive.insert(at, True)
            # Positions after an insert point move up by one: index them afresh.
            self._index = {r["id"]: i for i, r in enumerate(self._records)}
            self._live += len(records)
            self._version += 1
            return [r["id"] for r in records]

    def update(self, targets: Sequence[str] | int, where: Where = "head") -> list[str]:
        """Edit records in place (position unchanged); returns their ids."""
        with self._lock:
            ids = self._resolve(targets, where)
            for record_id in ids:
                index = self._index[record_id]
                self._revision += 1
                self._maker.touch(self._records[index], self._revision)
                self._encoded[index] = _encode(self._records[index])
            self._version += 1
            return ids

    def delete(self, targets: Sequence[str] | int, where: Where = "head") -> list[str]:
        """Turn records into tombstones; returns their ids."""
        with self._lock:
            ids = self._resolve(targets, where)
            for record_id in ids:
                self._alive[self._index[record_id]] = False
            self._live -= len(ids)
            self._version += 1
            return ids

    def _resolve(self, targets: Sequence[str] | int, where: Where) -> list[str]:
        if isinstance(targets, str):  # one id, not a sequence of one-letter ids
            targets = [targets]
        if not isinstance(targets, int):
            ids = list(dict.fromkeys(targets))
            for record_id in ids:
                if not self._alive[self.position(record_id)]:
                    raise UnknownRecordError(record_id)
            return ids
        live = [i for i in range(len(self._records)) if self._alive[i]]
        count = min(max(targets, 0), len(live))
        if where == "head":
            chosen = live[len(live) - count :]
        elif where == "tail":
            chosen = live[:count]
        else:
            chosen = self._rng.sample(live, count)
        return [self._records[i]["id"] for i in chosen]


class Dataset:
    """The entity stores of every mounted API, rebuilt from scratch on reset."""

    def __init__(
        self,
        sizes: Mapping[str, int],
        seed: int,
        makers: Callable[[str], RecordMaker],
        step: int = DEFAULT_STEP,
    ) -> None:
        self._sizes = dict(sizes)
        self._step = step
        self._seed = seed
        self._makers = makers
        self._lock = threading.Lock()
        self._stores: dict[str, EntityStore] = {}
        self.reset()

    def reset(self) -> None:
        stores = {
            name: EntityStore(name, self._makers(name), self._seed, size, self._step)
            for name, size in self._sizes.items()
        }
        with self._lock:
            self._stores = stores

    def resize(self, entity: str, size: int) -> None:
        """Replace ``entity`` by a fresh store of ``size`` records (the same records a
        sandbox configured with that size serves)."""
        if size < 0:
            raise ValueError(f"invalid entity size {entity!r}={size}")
        store = EntityStore(entity, self._makers(entity), self._seed, size, self._step)
        with self._lock:
            self._sizes[entity] = size
            self._stores = {**self._stores, entity: store}

    @property
    def entities(self) -> list[str]:
        return sorted(self._stores)

    def store(self, entity: str) -> EntityStore:
        try:
            return self._stores[entity]
        except KeyError:
            raise UnknownEntityError(entity) from None

    def __contains__(self, entity: object) -> bool:
        return entity in self._stores
