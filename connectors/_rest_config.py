"""REST connectors from TOML or a mapping, checked key by key.

```toml
base_url = "https://api.example.com"
[auth]
type = "bearer"              # none | bearer | basic | api_key
token_env = "EXAMPLE_TOKEN"  # the variable's name; the secret never enters the file

[entities.issues]
path = "/repos/acme/widgets/issues"
params = { state = "all", sort = "created", direction = "asc" }
created_field = "created_at"
updated_field = "updated_at"
page_size_param = "per_page"
paginator = { type = "link_header" }
```

Every problem is reported at once, each with the source, the key path and what was
expected, as the policy files are; nothing is requested before the file is valid.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import attrs
from attrs import frozen

if TYPE_CHECKING:
    from statesync.connectors.rest import RESTConnector

from statesync._policy_config import shown_value
from statesync._toml import read_toml
from statesync.connectors._rest_entity import RESTAuth, RESTEntity
from statesync.connectors._rest_paging import PAGINATORS
from statesync.errors import ConfigurationError, ErrorKind

TOP_KEYS = ("base_url", "auth", "headers", "timeout", "entities", "name")


class RESTConfigError(ConfigurationError):
    """A REST configuration is invalid; ``problems`` lists ``(key path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        lines = "".join(f"\n  {path}: {message}" for path, message in problems)
        super().__init__(f"invalid REST connector config in {source}:{lines}")
        self.source = source
        self.problems = problems


@frozen
class RESTSettings:
    """A checked REST configuration: what :class:`RESTConnector` is built from."""

    base_url: str
    entities: Mapping[str, RESTEntity]
    auth: RESTAuth = attrs.field(factory=RESTAuth)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    timeout: float = 60.0
    name: str = "rest"

    def connector(self, env: Mapping[str, str] | None = None) -> RESTConnector:
        from statesync.connectors.rest import RESTConnector

        return RESTConnector(
            self.base_url,
            self.entities,
            auth=self.auth,
            headers=self.headers,
            env=env,
            timeout=self.timeout,
            name=self.name,
        )


def load_rest_config(path: str | Path) -> RESTSettings:
    """Read and check a REST TOML file."""
    source = str(path)
    doc = read_toml(path, lambda message: RESTConfigError(source, [("(file)", message)]))
    return rest_from_mapping(doc, source=source)


def rest_from_mapping(
    doc: Mapping[str, Any], *, source: str = "REST config", prefix: str = ""
) -> RESTSettings:
    """Check a mapping of the TOML file's shape; ``prefix`` is prepended to the key paths
    of settings other than the entities (``connector.options.`` in a job config, whose
    ``[entities.NAME]`` tables sit at the top)."""
    checker = _Checker(source, prefix)
    settings = checker.settings(doc)
    if checker.problems or settings is None:
        raise RESTConfigError(source, checker.problems)
    return settings


class _Checker:
    def __init__(self, source: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix
        self.problems: list[tuple[str, str]] = []

    def problem(self, path: str, message: str) -> None:
        if path.startswith("entities"):
            self.problems.append((path, message))
            return
        self.problems.append(
            (self.prefix + path if path else self.prefix.rstrip(".") or "(top level)", message)
        )

    def settings(self, doc: Mapping[str, Any]) -> RESTSettings | None:
        if not isinstance(doc, Mapping):
            self.problem("", f"expected a table, got {_shown(doc)}")
            return None
        self.unknown(doc, "", TOP_KEYS)
        base = doc.get("base_url")
        if not isinstance(base, str) or not base:
            self.problem("base_url", f"expected the API's base URL as a string, got {_shown(base)}")
        auth = self.structure(RESTAuth, doc.get("auth", {}), "auth")
        headers = self.value(doc.get("headers", {}), Mapping[str, str], "headers")
        timeout = self.value(doc.get("timeout", 60.0), float, "timeout")
        name = self.value(doc.get("name", "rest"), str, "name")
        tables = doc.get("entities")
        if not isinstance(tables, Mapping) or not tables:
            self.problem("entities", "expected at least one [entities.NAME] table")
            return None
        entities = {
            n: self.structure(RESTEntity, t, f"entities.{_key(n)}") for n, t in tables.items()
        }
        if self.problems:
            return None
        try:
            return RESTSettings(
                base_url=str(base),
                entities=entities,
                auth=auth or RESTAuth(),
                headers=headers,
                timeout=timeout,
                name=name,
            )
        except ConfigurationError as exc:
            self.problem("", str(exc))
            return None

    def unknown(self, table: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.problem(
                    _join(where, key), f"unknown key; expected one of: {', '.join(allowed)}"
                )

    def structure(self, cls: type[Any], table: object, where: str) -> Any:
        if not isinstance(table, Mapping):
            self.problem(where, f"expected a table, got {_shown(table)}")
            return None
        fields = {a.name: a for a in attrs.fields(cls)}
        hints = typing.get_type_hints(cls)
        self.unknown(table, where, tuple(fields))
        before = len(self.problems)
        kwargs: dict[str, Any] = {}
        for name, attribute in fields.items():
            if name not in table:
                if attribute.default is attrs.NOTHING:
                    self.problem(_join(where, name), "missing (required)")
                continue
            kwargs[name] = self.value(table[name], hints[name], _join(where, name))
        if len(self.problems) > before:
            return None
        try:
            return cls(**kwargs)
        except (ConfigurationError, ValueError, TypeError) as exc:
            key, sep, message = str(exc).partition(": ")
            names = [k.strip() for k in key.split(",")]
            if sep and all(n.split(".")[0] in fields for n in names):
                self.problem(", ".join(f"{where}.{n}" for n in names), message)
            else:
                self.problem(where, str(exc))
            return None

    def value(self, value: object, hint: Any, where: str) -> Any:
        origin, args = get_origin(hint), get_args(hint)
        if hint is Any:
            return value
        if origin in (Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            if any(getattr(a, "type", None) in PAGINATORS for a in options):
                return self.paginator(value, where)
            if len(options) == 1:
                return self.value(value, options[0], where)
        if origin is Literal:
            if value not in args:
                self.problem(
                    where, f"expected one of {', '.join(map(repr, args))}, got {_shown(value)}"
                )
            return value
        if hint is ErrorKind:
            if value not in {k.value for k in ErrorKind}:
                kinds = ", ".join(k.value for k in ErrorKind)
                self.problem(where, f"expected an error kind ({kinds}), got {_shown(value)}")
                return None
            return ErrorKind(value)
        if origin in (Mapping, dict) or hint is Mapping:
            if not isinstance(value, Mapping):
                self.problem(where, f"expected a table, got {_shown(value)}")
                return {}
            inner = args[1] if len(args) == 2 else Any
            return {k: self.value(v, inner, _join(where, k)) for k, v in value.items()}
        checks: dict[Any, tuple[str, Any]] = {
            str: ("a string", lambda v: isinstance(v, str)),
            int: ("an integer", lambda v: type(v) is int),
            float: ("a number", lambda v: type(v) in (int, float)),
            bool: ("true or false", lambda v: type(v) is bool),
        }
        if hint in checks:
            described, ok = checks[hint]
            if not ok(value):
                self.problem(where, f"expected {described}, got {_shown(value)}")
            return float(value) if hint is float and ok(value) else value  # type: ignore[arg-type]
        return value

    def paginator(self, value: object, where: str) -> Any:
        if not isinstance(value, Mapping):
            self.problem(where, f"expected a table with a type, got {_shown(value)}")
            return None
        kind = value.get("type")
        cls = PAGINATORS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            self.problem(
                _join(where, "type"),
                f"expected one of: {', '.join(PAGINATORS)}, got {_shown(kind)}",
            )
            return None
        rest = {k: v for k, v in value.items() if k != "type"}
        return self.structure(cls, rest, where)


def _join(where: str, key: str) -> str:
    return f"{where}.{_key(key)}" if where else _key(key)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _shown(value: object) -> str:
    """As the policy files name values; a mapping from code may hold None (TOML cannot)."""
    return "nothing" if value is None else shown_value(value)
