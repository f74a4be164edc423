"""Retry and chunk policies from a TOML file, a mapping or environment variables.

All three forms share one shape (see ``examples/policies.toml``)::

    [default]                          # RetryPolicy fields
    attempts = 5
    [default.chunk]                    # ChunkPolicy fields
    max_iterations = 10
    [default.kinds.rate_limited]       # KindOverride fields, per ErrorKind
    attempts = 10
    [connectors.stripe]                # inherits default, overrides what it sets
    attempts = 8
    [connectors.stripe.entities.invoices]   # inherits connectors.stripe
    attempts = 2

Each level inherits the one above it field by field (``kinds`` per kind, field by field)
and resolves to full :class:`RetryPolicy` and :class:`ChunkPolicy` values in a
:class:`PolicySet`. Tables are structured by a strict copy of the one cattrs converter; a
bad document raises :class:`PolicyConfigError`, naming the source, every bad key path and
what was expected, never a cattrs traceback.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar, get_args, get_origin

import attrs
from attrs import frozen
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.preconf.json import JsonConverter

from statesync._converter import converter as _base_converter
from statesync._policy import ChunkPolicy, KindOverride, PolicySet, RetryPolicy
from statesync.errors import ConfigurationError, ErrorKind

ENV_PREFIX: Final = "STATESYNC_POLICY__"
Known = Mapping[str, Collection[str] | None]
"""Known connectors, each with its known entities (``None``: any entity)."""

_T = TypeVar("_T")
_KIND_VALUES: Final = frozenset(k.value for k in ErrorKind)
_Path = tuple[str | int, ...]


@frozen
class Problem:
    """One thing wrong with a policy document: where, and what was expected."""

    path: str
    message: str


class PolicyConfigError(ConfigurationError):
    """A policy document is invalid; ``problems`` lists every bad key path."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        lines = "".join(f"\n  {p.path}: {p.message}" for p in problems)
        super().__init__(f"invalid policies in {source}:{lines}")
        self.source = source
        self.problems = problems


# -- the strict converter ----------------------------------------------------------


def _strict(check: Callable[[object], bool], cast: Callable[[Any], _T]) -> Callable[..., _T]:
    def hook(value: object, _type: object) -> _T:
        if not check(value):
            raise TypeError(f"wrong type {type(value).__name__}")
        return cast(value)

    return hook


def _make_converter() -> JsonConverter:
    # Storage loads are lenient (rolling deploys); a hand-written file is not: a typo
    # or "5" where 5 was meant must be reported, not coerced or ignored.
    conv = _base_converter.copy(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict(lambda v: type(v) is int, int))
    conv.register_structure_hook(float, _strict(lambda v: type(v) in (int, float), float))
    conv.register_structure_hook(bool, _strict(lambda v: type(v) is bool, bool))
    conv.register_structure_hook(str, _strict(lambda v: isinstance(v, str), str))
    # Without its own hook ErrorKind, a str subclass, would dispatch to the str hook.
    conv.register_structure_hook(ErrorKind, _strict(lambda v: v in _KIND_VALUES, ErrorKind))
    # A string is iterable: without this, "transient" would be read as nine letters.
    kinds = frozenset[ErrorKind]
    generated = conv.get_structure_hook(kinds)
    strict_list = _strict(lambda v: isinstance(v, list | tuple), lambda v: generated(v, kinds))
    conv.register_structure_hook_func(lambda t: t == kinds, strict_list)
    return conv


_converter: Final = _make_converter()
_STRUCTURE_ERRORS: Final = (BaseValidationError, ValueError, TypeError)
_CHUNK_KEY, _KINDS_KEY, _ENTITIES_KEY = "chunk", "kinds", "entities"
_TOP_KEYS: Final = ("default", "connectors")
_RENAMED_CHUNK_KEYS: Final = {"concurrency": "pages_in_flight"}
"""Deprecated chunk keys (accepted with a warning for one release) and their new names."""


# -- public entry points -----------------------------------------------------------


def load_policies(path: str | os.PathLike[str], *, known: Known | None = None) -> PolicySet:
    """Read a TOML policy file; with ``known``, unknown connectors/entities are errors."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"policy file {source} cannot be read: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyConfigError(source, [Problem("(file)", f"not valid TOML: {exc}")]) from None
    return policies_from_mapping(document, known=known, source=source)


def policies_from_mapping(
    document: Mapping[str, Any], *, known: Known | None = None, source: str = "policy mapping"
) -> PolicySet:
    """Structure a mapping of the TOML file's shape into a :class:`PolicySet`."""
    return _Resolver(source, known).resolve(document)


def policies_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    known: Known | None = None,
    prefix: str = ENV_PREFIX,
) -> PolicySet:
    """Policies from ``STATESYNC_POLICY__<KEY>__<KEY>…`` variables.

    ``__`` separates keys, which are lower-cased; values are read as TOML values
    (``3``, ``0.5``, ``true``, ``["transient"]``) and otherwise taken as strings, e.g.
    ``STATESYNC_POLICY__CONNECTORS__STRIPE__ENTITIES__INVOICES__ATTEMPTS=2``.
    """
    env = os.environ if environ is None else environ
    document, names = _env_document(env, prefix)
    resolver = _Resolver(f"environment variables {prefix}*", known, names)
    return resolver.resolve(document)


def known_from_names(names: Collection[str]) -> dict[str, set[str] | None]:
    """``{"stripe": {"invoices"}}`` from ``["stripe.invoices"]``; a bare name allows any entity."""
    out: dict[str, set[str] | None] = {}
    for name in names:
        connector, _, entity = name.partition(".")
        if not entity:
            out[connector] = None
            continue
        entities = out.setdefault(connector, set())
        if entities is not None:
            entities.add(entity)
    return out


def policy_targets(policies: PolicySet) -> list[str]:
    """``default``, then every connector and ``connector.entity`` the set has a level for."""
    return ["default", *sorted(policies.retry_overrides)]


def describe_resolved(retry: RetryPolicy, chunk: ChunkPolicy) -> dict[str, Any]:
    """A resolved policy as plain JSON-able data, for people and ``--json``."""
    plain = _converter.unstructure(attrs.evolve(retry, kinds={}))
    plain.pop(_KINDS_KEY, None)
    plain["retry_on"] = sorted(plain["retry_on"])
    kinds = {str(k): _describe_kind(retry, k) for k in sorted(retry.kinds)}
    return {"retry": plain, "kinds": kinds, "chunk": _describe_chunk(chunk)}


_THROUGHPUT = ("pages_in_flight", "target_duration", "min_iterations", "rate_limit", "rate_burst")


def _describe_chunk(chunk: ChunkPolicy) -> dict[str, Any]:
    """The chunk policy; throughput settings only when they are set (off by default)."""
    plain: dict[str, Any] = _converter.unstructure(chunk)
    defaults = ChunkPolicy()
    for name in _THROUGHPUT:
        if getattr(chunk, name) == getattr(defaults, name):
            plain.pop(name, None)
    return plain


def _describe_kind(retry: RetryPolicy, kind: ErrorKind) -> str:
    effective = retry.for_kind(kind)
    if kind not in effective.retry_on:
        return "not retried"
    base = attrs.evolve(retry, kinds={})
    changed = [
        f"{a.name}={getattr(effective, a.name)}"
        for a in attrs.fields(KindOverride)
        if a.name != "retry" and getattr(effective, a.name) != getattr(base, a.name)
    ]
    return "retried" + (f" with {' '.join(changed)}" if changed else "")


def _env_document(env: Mapping[str, str], prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The nested document the variables spell, and which variable set which key path."""
    document: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name in sorted(env):
        if not name.upper().startswith(prefix.upper()):
            continue
        keys = [k.lower() for k in name[len(prefix) :].split("__")]
        _set_nested(document, keys, _env_value(env[name]), name)
        names[_dotted(tuple(keys))] = name
    return document, names


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_nested(document: dict[str, Any], keys: list[str], value: Any, name: str) -> None:
    table = document
    for key in keys[:-1]:
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"${name} sets a key inside {key!r}, which another variable sets to a value"
            )
    if isinstance(table.get(keys[-1]), dict):
        raise ConfigurationError(f"${name} sets {keys[-1]!r}, which other variables use as a table")
    table[keys[-1]] = value


# -- resolution --------------------------------------------------------------------


class _Resolver:
    """Walks one document, inheriting level by level and collecting every problem."""

    def __init__(
        self, source: str, known: Known | None, names: Mapping[str, str] | None = None
    ) -> None:
        self.source = source
        self.known = known
        self.names = names or {}
        self.problems: list[Problem] = []

    def resolve(self, document: object) -> PolicySet:
        top = self._table(document, ())
        self._unknown_keys(top, (), _TOP_KEYS)
        retry, chunk = self._level(top.get("default", {}), ("default",), RetryPolicy(), None)
        chunk = chunk or ChunkPolicy()
        retries: dict[str, RetryPolicy] = {}
        chunks: dict[str, ChunkPolicy] = {}
        for name, raw in self._table(top.get("connectors", {}), ("connectors",)).items():
            self._connector(name, raw, (retry, chunk), retries, chunks)
        if self.problems:
            raise PolicyConfigError(self.source, self.problems)
        return PolicySet(retry, chunk, retries, chunks)

    def _connector(
        self,
        name: str,
        raw: object,
        parent: tuple[RetryPolicy, ChunkPolicy],
        retries: dict[str, RetryPolicy],
        chunks: dict[str, ChunkPolicy],
    ) -> None:
        where = ("connectors", name)
        if self.known is not None and name not in self.known:
            self._problem(where, f"unknown connector; expected one of: {_listed(self.known)}")
        table = self._table(raw, where)
        retry, chunk = self._level(table, where, parent[0], parent[1], _ENTITIES_KEY)
        retries[name], chunks[name] = retry, chunk or parent[1]
        for entity, entity_raw in self._table(
            table.get(_ENTITIES_KEY, {}), (*where, _ENTITIES_KEY)
        ).items():
            self._check_entity(name, entity)
            e_retry, e_chunk = self._level(
                entity_raw, (*where, _ENTITIES_KEY, entity), retry, chunks[name]
            )
            retries[f"{name}.{entity}"] = e_retry
            chunks[f"{name}.{entity}"] = e_chunk or chunks[name]

    def _check_entity(self, connector: str, entity: str) -> None:
        allowed = (self.known or {}).get(connector)
        if allowed is not None and entity not in allowed:
            where = ("connectors", connector, _ENTITIES_KEY, entity)
            self._problem(where, f"unknown entity; expected one of: {_listed(allowed)}")

    def _level(
        self,
        raw: object,
        where: _Path,
        retry: RetryPolicy,
        chunk: ChunkPolicy | None,
        *extra: str,
    ) -> tuple[RetryPolicy, ChunkPolicy | None]:
        """One level's policies: the parent's with this level's keys laid over them."""
        table = dict(self._table(raw, where))
        chunk_raw = self._renamed(table.pop(_CHUNK_KEY, {}), (*where, _CHUNK_KEY))
        for key in extra:
            table.pop(key, None)
        new_retry = self._structure(retry, table, where, RetryPolicy, (_CHUNK_KEY, *extra))
        base_chunk = chunk or ChunkPolicy()
        new_chunk = self._structure(base_chunk, chunk_raw, (*where, _CHUNK_KEY), ChunkPolicy, ())
        return new_retry or retry, new_chunk or chunk

    def _renamed(self, chunk_raw: object, where: _Path) -> object:
        """The chunk table with deprecated keys (one release) under their new names."""
        if not isinstance(chunk_raw, Mapping):
            return chunk_raw
        table = dict(chunk_raw)
        for old, new in _RENAMED_CHUNK_KEYS.items():
            if old not in table:
                continue
            path = _dotted((*where, old))
            name = self.names.get(path)
            shown = f"{path} (${name})" if name else path
            if new in table:
                self._problem((*where, old), f"the deprecated name of {new!r}, also set")
                continue
            warnings.warn(
                f"{self.source}: {shown} is deprecated: use {new}",
                FutureWarning,
                stacklevel=2,
            )
            table[new] = table.pop(old)
        return table

    def _structure(
        self, parent: _T, layer: object, where: _Path, cls: type[_T], extra: tuple[str, ...]
    ) -> _T | None:
        layer = self._table(layer, where)
        base = _converter.unstructure(parent)
        try:
            return _converter.structure(_overlay(base, layer), cls)
        except _STRUCTURE_ERRORS:
            pass
        # attrs validators stop at the first bad field. The parent is valid, so laying
        # one key at a time over it finds every bad key, each with its own path.
        before = len(self.problems)
        for key, value in layer.items():
            single = _overlay(base, {key: value})
            try:
                _converter.structure(single, cls)
            except _STRUCTURE_ERRORS as exc:
                for path, message in _explain(exc, single, extra):
                    self._problem((*where, *path), message)
        if len(self.problems) == before:
            self._problem(where, f"these values do not make a valid {cls.__name__} together")
        return None

    def _table(self, value: object, where: _Path) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        self._problem(where, f"expected a table, got {shown_value(value)}")
        return {}

    def _unknown_keys(
        self, table: Mapping[str, Any], where: _Path, allowed: tuple[str, ...]
    ) -> None:
        for key in table:
            if key not in allowed:
                self._problem((*where, key), f"unknown key; expected one of: {', '.join(allowed)}")

    def _problem(self, where: _Path, message: str) -> None:
        path = _dotted(where) or "(top level)"
        name = self.names.get(path)
        self.problems.append(Problem(f"{path} (${name})" if name else path, message))


def _overlay(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``layer`` over ``base``; tables merge key by key, so a kind override is partial."""
    out = dict(base)
    for key, value in layer.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = _overlay(below, value)
        else:
            out[key] = value
    return out


# -- explaining cattrs errors ------------------------------------------------------

_ATTRS_CHECK = re.compile(r"^'(?P<name>\w+)' must be (?P<rule>.+): (?P<got>.*)$")


def _explain(
    exc: BaseException, document: Mapping[str, Any], extra: tuple[str, ...]
) -> Iterator[tuple[_Path, str]]:
    for path, expected, leaf in _leaves(exc, (), None):
        if isinstance(leaf, ForbiddenExtraKeysError):
            allowed = [a.name for a in attrs.fields(leaf.cl)] + list(extra)
            for key in sorted(leaf.extra_fields):
                yield (*path, key), f"unknown key; expected one of: {', '.join(allowed)}"
        elif (check := _ATTRS_CHECK.match(str(leaf))) is not None:
            name = check["name"]
            yield (*path, name), f"expected a value {check['rule']}, got {check['got']}"
        else:
            yield path, _mismatch(expected, path, document)


def _leaves(
    exc: BaseException, path: _Path, expected: object
) -> Iterator[tuple[_Path, object, BaseException]]:
    """Every underlying error of a cattrs error tree, with its key path and expected type."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        noted, plain = exc.group_exceptions()
        for sub, note in noted:
            if isinstance(note, AttributeValidationNote):
                yield from _leaves(sub, (*path, note.name), note.type)
            elif isinstance(note, IterableValidationNote):
                yield from _leaves(sub, (*path, note.index), note.type)
        for sub in plain:
            yield from _leaves(sub, path, expected)
    else:
        yield path, expected, exc


def _mismatch(expected: object, path: _Path, document: Mapping[str, Any]) -> str:
    parent, key = _lookup(document, path[:-1]), path[-1] if path else None
    if expected is ErrorKind and isinstance(parent, Mapping):
        # A kinds table's key is the error kind: the key, not its value, is wrong.
        return f"unknown error kind {key!r}; expected one of: {_listed(list(ErrorKind))}"
    got = _lookup(document, path)
    return f"expected {_describe(expected)}, got {shown_value(got)}"


def _lookup(document: object, path: _Path) -> object:
    for key in path:
        if isinstance(document, Mapping):
            document = document.get(key)
        elif isinstance(document, list) and isinstance(key, int) and key < len(document):
            document = document[key]
        else:
            return None
    return document


_NAMES: Final[Mapping[object, str]] = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
}


def _describe(expected: object) -> str:
    if expected in _NAMES:
        return _NAMES[expected]
    if expected is ErrorKind:
        return f"an error kind (one of: {_listed(list(ErrorKind))})"
    args = [a for a in get_args(expected) if a is not type(None)]
    origin = get_origin(expected)
    if origin in (frozenset, set, list, tuple):
        if args == [ErrorKind]:
            return f"a list of error kinds (one of: {_listed(list(ErrorKind))})"
        return "a list"
    if len(args) == 1:
        return _describe(args[0])  # an optional value
    return "a table"


def shown_value(value: object) -> str:
    """A value as a config error names it ("a table", "the string \"x\"", ...)."""
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, list):
        return f"a list {json.dumps(value, default=str)}"
    return repr(value)


def _listed(names: Collection[str]) -> str:
    return ", ".join(sorted(str(n) for n in names))


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _dotted(path: _Path) -> str:
    parts = []
    for key in path:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append("." + (key if _BARE_KEY.match(key) else json.dumps(key)))
    return "".join(parts).removeprefix(".")
