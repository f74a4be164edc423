"""Immutable, hashable mappings for the mappings inside frozen value objects.

A :class:`FrozenDict` is a ``dict`` whose every mutating method raises ``TypeError``,
with a hash. It stays a ``dict`` subclass on purpose: ``json.dumps``, cattrs and the
connectors that read checkpoints keep working on it unchanged, and ``dict(fd)`` is the
mutable copy. :func:`freeze` makes values deeply immutable (dicts become
``FrozenDict``, lists and tuples become tuples), so a checkpoint's nested metadata is
frozen too; the storage edge (``statesync._converter``) turns them back into plain
dicts and lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class FrozenDict(dict[_K, _V]):
    """A ``dict`` that cannot change after construction, hashable when its values are."""

    __slots__ = ("_hash",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Values are frozen on the way in, so a FrozenDict is always deeply immutable.
        super().__init__((k, freeze(v)) for k, v in dict(*args, **kwargs).items())
        self._hash: int | None = None

    def _immutable(self, *_args: object, **_kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is immutable; copy it with dict(...) to change it")

    __setitem__ = _immutable
    __delitem__ = _immutable
    __ior__ = _immutable
    clear = _immutable
    pop = _immutable
    popitem = _immutable
    setdefault = _immutable
    update = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(frozenset(self.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy would otherwise rebuild it item by item through __setitem__.
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict[_K, _V]:
        return self

    def __deepcopy__(self, _memo: object) -> FrozenDict[_K, _V]:
        return self


def freeze(value: Any) -> Any:
    """``value`` made deeply immutable: mappings to :class:`FrozenDict`, lists to tuples."""
    cls = type(value)
    if cls is FrozenDict:
        return value
    if isinstance(value, Mapping):
        return FrozenDict(value)
    if cls is list or cls is tuple:
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)
    return value


def frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """An attrs converter typed as users call constructors: any mapping (or ``None``)
    to a deeply frozen one."""
    if value is None:
        return EMPTY
    return value if type(value) is FrozenDict else FrozenDict(value)


def thaw(value: Any) -> Any:
    """The mutable, JSON-ready copy of a frozen value: dicts and lists again."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


EMPTY: FrozenDict[str, Any] = FrozenDict()
"""The empty frozen mapping, shared (the default of every frozen mapping field)."""
