"""One job config file: connector, entities, policies, store and destination.

```toml
[job]                       # all optional
id = "issues"               # default: generated
mode = "full"               # or "incremental"
entities = ["issues"]       # default: every [entities.NAME] table

[connector]
name = "rest"               # a built-in, an installed plugin, or "module:factory"
api_key_env = "MY_API_KEY"  # the variable holding its key; "" for none (built-ins)

[connector.options]         # the connector's own options (never secrets)
base_url = "http://127.0.0.1:12111/rest"

[entities.issues]           # entity tables, passed to the connector as options.entities
path = "/link/issues"
paginator = { type = "link_header" }

[policies.default.chunk]    # the policy file's shape (statesync policy check)
page_size = 50

[store]
url = "sqlite:///statesync-state.db"
[destination]
url = "sqlite:///statesync-data.db"
[run]                       # runner settings: parallel_entities, lease_wait, budget_redis
parallel_entities = 2
```

The job stores what it ran with, secrets excluded (:func:`stored_params`), so ``statesync
resume JOB`` rebuilds the same connector, policies and destination with no flags.
Errors name the file, the key path and what was expected, before any job exists.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from attrs import field, frozen

from statesync._models import SyncMode
from statesync._namespace import effective_namespace
from statesync._toml import read_toml
from statesync.errors import ConfigurationError

_TOP: Final = ("job", "connector", "entities", "policies", "store", "destination", "run")
_JOB: Final = ("id", "mode", "entities", "namespace")
_CONNECTOR: Final = ("name", "api_key_env", "options")
_RUN: Final = {"parallel_entities": int, "lease_wait": float, "budget_redis": str}
_RUN_RENAMED: Final = {"concurrency": "parallel_entities"}
"""Deprecated ``[run]`` keys (accepted with a warning for one release) and their new names."""
CONFIG_KEY: Final = "config"
"""Where a job's params keep the config it ran with."""


class JobConfigError(ConfigurationError):
    def __init__(self, source: str, path: str, message: str) -> None:
        super().__init__(f"{source}: {path}: {message}")
        self.source = source
        self.path = path


@frozen
class JobConfig:
    """A checked job config; ``options`` are the connector's, entity tables included."""

    source: str
    connector: str
    options: Mapping[str, Any] = field(factory=dict)
    entities: tuple[str, ...] = ()
    mode: SyncMode = SyncMode.FULL
    job_id: str | None = None
    namespace: str | None = None
    """``None``: the connector's name; ``""``: the shared tables of older releases."""
    policies: Mapping[str, Any] | None = None
    store: str | None = None
    destination: str | None = None
    run: Mapping[str, Any] = field(factory=dict)


def load_job_config(path: str | Path) -> JobConfig:
    return job_config_from_mapping(read_toml(path), source=str(path))


def job_config_from_mapping(doc: Mapping[str, Any], *, source: str = "job config") -> JobConfig:
    _known(source, "", doc, _TOP)
    job = _table(source, "job", doc.get("job", {}))
    _known(source, "job.", job, _JOB)
    conn = _table(source, "connector", doc.get("connector"))
    _known(source, "connector.", conn, _CONNECTOR)
    name = conn.get("name")
    if not isinstance(name, str) or not name:
        raise JobConfigError(source, "connector.name", f"expected a connector name, got {name!r}")
    options = dict(_table(source, "connector.options", conn.get("options", {})))
    if "api_key_env" in conn:
        key_env = conn["api_key_env"]
        if not isinstance(key_env, str):
            raise JobConfigError(
                source, "connector.api_key_env", f'expected a variable name or "", got {key_env!r}'
            )
        options["api_key_env"] = key_env
    tables = _table(source, "entities", doc.get("entities", {}))
    for entity, table in tables.items():
        _table(source, f"entities.{entity}", table)
    if tables:
        if "entities" in options:
            raise JobConfigError(
                source,
                "connector.options.entities",
                "set entities as [entities.NAME] tables or here, not both",
            )
        options["entities"] = dict(tables)
    entities = _entities(source, job.get("entities"), tables)
    mode = job.get("mode", "full")
    if mode not in {m.value for m in SyncMode}:
        raise JobConfigError(source, "job.mode", f'expected "full" or "incremental", got {mode!r}')
    policies = doc.get("policies")
    if policies is not None:
        _table(source, "policies", policies)
    return JobConfig(
        source=source,
        connector=name,
        options=options,
        entities=entities,
        mode=SyncMode(mode),
        job_id=_optional_text(source, "job.id", job.get("id")),
        namespace=_namespace(source, job.get("namespace")),
        policies=policies,
        store=_url(source, "store", doc),
        destination=_url(source, "destination", doc),
        run=_run(source, doc.get("run", {})),
    )


def _entities(source: str, listed: object, tables: Mapping[str, Any]) -> tuple[str, ...]:
    if listed is None:
        return tuple(tables)
    if not isinstance(listed, list) or not all(isinstance(e, str) for e in listed) or not listed:
        raise JobConfigError(
            source, "job.entities", f"expected a list of entity names, got {listed!r}"
        )
    unknown = [e for e in listed if tables and e not in tables]
    if unknown:
        raise JobConfigError(
            source,
            "job.entities",
            f"{unknown[0]!r} has no [entities.{unknown[0]}] table; "
            f"expected one of: {', '.join(tables)}",
        )
    return tuple(listed)


def _url(source: str, key: str, doc: Mapping[str, Any]) -> str | None:
    if key not in doc:
        return None
    table = _table(source, key, doc[key])
    _known(source, f"{key}.", table, ("url",))
    return _optional_text(source, f"{key}.url", table.get("url"))


def _run(source: str, raw: object) -> dict[str, Any]:
    table = _renamed(source, dict(_table(source, "run", raw)))
    _known(source, "run.", table, tuple(_RUN))
    for key, kind in _RUN.items():
        value = table.get(key)
        ok = value is None or (
            type(value) in (int, float) if kind is float else type(value) is kind
        )
        if not ok:
            raise JobConfigError(source, f"run.{key}", f"expected {kind.__name__}, got {value!r}")
    return dict(table)


def _renamed(source: str, table: dict[str, Any]) -> dict[str, Any]:
    for old, new in _RUN_RENAMED.items():
        if old not in table:
            continue
        if new in table:
            raise JobConfigError(source, f"run.{old}", f"the deprecated name of {new!r}, also set")
        warnings.warn(f"{source}: run.{old} is deprecated: use {new}", FutureWarning, stacklevel=3)
        table[new] = table.pop(old)
    return table


def _table(source: str, path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        shown = "nothing" if value is None else repr(value)
        raise JobConfigError(source, path, f"expected a table, got {shown}")
    return value


def _known(source: str, where: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise JobConfigError(
                source, f"{where}{key}", f"unknown key; expected one of: {', '.join(allowed)}"
            )


def _namespace(source: str, value: object) -> str | None:
    name = _optional_text(source, "job.namespace", value)
    try:
        return None if name is None else effective_namespace("", name) or ""
    except ConfigurationError as exc:
        raise JobConfigError(source, "job.namespace", str(exc)) from None


def _optional_text(source: str, path: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise JobConfigError(source, path, f"expected a string, got {value!r}")
    return value
