"""GraphQL entities from a TOML file, for the command line (``--graphql-config``).

```toml
auth_header = "Authorization"   # optional; the key from $STATESYNC_API_KEY goes here
auth_scheme = "Bearer"          # optional; "" sends the key bare

[entities.tickets]
query = '''query($first: Int, $after: String) { ... }'''
path = "workspace.tickets"
updated_field = "updatedAt"
```

Each ``[entities.NAME]`` table takes the fields of
:class:`~statesync.connectors.graphql.GraphQLEntity`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from statesync._frozen import FrozenDict
from statesync._toml import read_toml
from statesync.connectors.graphql import GraphQLEntity
from statesync.errors import ConfigurationError

_TOP = {"auth_header", "auth_scheme", "entities"}


def _entities(value: Mapping[str, GraphQLEntity]) -> Mapping[str, GraphQLEntity]:
    return FrozenDict(value)


@frozen
class GraphQLConfig:
    entities: Mapping[str, GraphQLEntity] = attrs.field(converter=_entities)
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"

    def headers(self, key: str) -> dict[str, str]:
        return {self.auth_header: f"{self.auth_scheme} {key}".strip()}


def load_graphql_config(path: str | Path) -> GraphQLConfig:
    """Read and check ``path``; errors name the file, the key and what was expected."""
    return graphql_from_mapping(read_toml(path), source=str(path))


def graphql_from_mapping(
    doc: Mapping[str, Any], *, source: str = "GraphQL config"
) -> GraphQLConfig:
    """Check a mapping of the TOML file's shape (a job config's connector options)."""
    path = source
    _no_unknown(path, "", dict(doc), _TOP)
    tables = doc.get("entities")
    if not isinstance(tables, dict) or not tables:
        raise ConfigurationError(f"{path}: entities: expected at least one [entities.NAME] table")
    entities = {name: _entity(path, name, table) for name, table in tables.items()}
    top = {k: _text(path, k, doc[k]) for k in ("auth_header", "auth_scheme") if k in doc}
    return GraphQLConfig(entities=entities, **top)


def _entity(path: str | Path, name: str, table: object) -> GraphQLEntity:
    where = f"entities.{name}"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: {where}: expected a table")
    _no_unknown(path, where + ".", table, {a.name for a in attrs.fields(GraphQLEntity)})
    for required in ("query", "path"):
        if required not in table:
            raise ConfigurationError(f"{path}: {where}.{required}: missing (required)")
    try:
        return GraphQLEntity(**table)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{path}: {where}: {exc}") from None


def _no_unknown(path: str | Path, where: str, table: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigurationError(
            f"{path}: {where}{unknown[0]}: unknown setting; expected one of {sorted(known)}"
        )


def _text(path: str | Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{path}: {key}: expected a string, got {value!r}")
    return value
