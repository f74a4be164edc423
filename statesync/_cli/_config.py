"""``run --config`` and ``resume``: one set of job settings from a file, the job and flags.

Settings are the command's option values (``store``, ``dest``, ``page_size`` ...). A job
config file gives their base values, flags typed on the command line override them, and
the job stores the result (no secrets: keys stay in environment variables) so ``resume``
starts from exactly what ``run`` used; flags typed on ``resume`` override again and are
printed as such.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import click
from attrs import frozen

from statesync._cli._renamed import RENAMED_SETTINGS, renamed_settings
from statesync._frozen import thaw
from statesync._jobconfig import CONFIG_KEY, JobConfig, load_job_config
from statesync._models import JobSpec, SyncMode
from statesync._plugins import connector_options, open_connector
from statesync.connector import BaseConnector
from statesync.errors import ConfigurationError

FLAG_POLICY: Final[Mapping[str, tuple[str, ...]]] = {
    "attempts": ("attempts",),
    "max_iterations": ("chunk", "max_iterations"),
    "page_size": ("chunk", "page_size"),
    "lease_ttl": ("chunk", "lease_ttl"),
    "pages_in_flight": ("chunk", "pages_in_flight"),
    "target_chunk_seconds": ("chunk", "target_duration"),
    "min_iterations": ("chunk", "min_iterations"),
    "rate_limit": ("chunk", "rate_limit"),
    "rate_burst": ("chunk", "rate_burst"),
}
"""Flags that set a field of the default policy level (over a config's [policies])."""
_FROM_FILE: Final = {
    "parallel_entities": "parallel_entities",
    "lease_wait": "lease_wait",
    "budget_redis": "budget_redis",
}


@frozen
class Prepared:
    """Everything a command needs to build its runner."""

    connector: str
    options: Mapping[str, Any]
    entities: tuple[str, ...]
    mode: SyncMode
    job_id: str | None
    settings: dict[str, Any]
    policies: Mapping[str, Any] | None
    overrides: tuple[str, ...]
    params: Mapping[str, Any]
    namespace: str | None = None
    """The job config's ``job.namespace`` (``None``: the connector's name)."""


def typed_flags(ctx: click.Context) -> set[str]:
    """Options the user typed (not defaults nor environment variables)."""
    source = click.core.ParameterSource.COMMANDLINE
    return {name for name in ctx.params if ctx.get_parameter_source(name) is source}


def prepare_run(
    ctx: click.Context,
    config_path: str | None,
    connector: str | None,
    base_url: str | None,
    graphql_config: str | None,
    entities: Sequence[str],
    mode: str,
    job_id: str | None,
    opts: dict[str, Any],
) -> Prepared:
    typed = typed_flags(ctx)
    if config_path is None:
        if not entities:
            raise click.UsageError("give --entity (repeatable) or --config FILE")
        given = {"base_url": base_url, "graphql_config": graphql_config}
        options: dict[str, Any] = {k: v for k, v in given.items() if v}
        options["entities"] = list(entities)
        name = connector or "stripe"
        params = {
            "connector": {"name": name, "options": options},
            **{k: v for k, v in given.items() if v},
        }
        return Prepared(
            name, options, tuple(entities), SyncMode(mode), job_id, opts, None, (), params
        )
    config = load_job_config(config_path)
    settings = _settings_from(config, opts, typed)
    options = dict(config.options)
    if base_url and "base_url" in typed:
        options["base_url"] = base_url
    chosen = tuple(entities) if entities else config.entities or tuple(_names(options))
    if not chosen:
        raise ConfigurationError(f"{config.source}: job.entities: no entity to sync")
    stored = {
        "file": config.source,
        "policies": config.policies,
        "settings": {k: settings[k] for k in _STORED if k in settings},
        "overrides": sorted(typed & set(_STORED)),
    }
    name = connector if connector and "connector" in typed else config.connector
    return Prepared(
        connector=name,
        options=options,
        entities=chosen,
        mode=SyncMode(mode) if "mode" in typed else config.mode,
        job_id=job_id or config.job_id,
        settings=settings,
        policies=config.policies,
        overrides=tuple(sorted(typed & set(_STORED))),
        params={"connector": {"name": name, "options": options}, CONFIG_KEY: stored},
        namespace=config.namespace,
    )


_STORED: Final = (
    "store",
    "dest",
    "parallel_entities",
    "lease_wait",
    "budget_redis",
    "policies",
    *FLAG_POLICY,
)


def _names(options: Mapping[str, Any]) -> list[str]:
    entities = options.get("entities")
    return list(entities) if isinstance(entities, Mapping | list) else []


def _settings_from(config: JobConfig, opts: dict[str, Any], typed: set[str]) -> dict[str, Any]:
    settings = dict(opts)
    base = {"store": config.store, "dest": config.destination}
    base.update({flag: config.run.get(key) for flag, key in _FROM_FILE.items()})
    for flag, value in base.items():
        if value is not None and flag not in typed:
            settings[flag] = value
    return settings


def prepare_resume(ctx: click.Context, spec: JobSpec, opts: dict[str, Any]) -> Prepared:
    typed = typed_flags(ctx)
    # Thawed: the stored settings and policies are read and laid over as plain TOML values.
    stored = thaw(spec.params.get(CONFIG_KEY))
    settings = dict(opts)
    policies = None
    if isinstance(stored, Mapping):
        for flag, value in renamed_settings(stored.get("settings")).items():
            if flag not in typed and flag != "store":
                settings[flag] = value
        policies = stored.get("policies")
    stored_connector = spec.params.get("connector")
    # The name the job was started with (a module:factory path, say), not the
    # connector's own name, which need not resolve.
    name = (
        stored_connector.get("name")
        if isinstance(stored_connector, Mapping) and stored_connector.get("name")
        else spec.connector
    )
    return Prepared(
        connector=str(name),
        options=connector_options(spec),
        entities=spec.entities,
        mode=spec.mode,
        job_id=spec.job_id,
        settings=settings,
        policies=policies,
        overrides=tuple(sorted(typed & set(_STORED))),
        params=spec.params,
    )


def policy_document(prepared: Prepared) -> Mapping[str, Any] | None:
    """The config's policies with the typed (or stored) flags laid over ``default``."""
    if prepared.policies is None or prepared.settings.get("policies"):
        return None
    doc: dict[str, Any] = thaw(prepared.policies)
    stored = prepared.params.get(CONFIG_KEY)
    flagged = set(prepared.overrides)
    if isinstance(stored, Mapping):
        flagged |= {RENAMED_SETTINGS.get(o, o) for o in stored.get("overrides") or ()}
    for flag in flagged & set(FLAG_POLICY):
        table = doc.setdefault("default", {})
        *parents, leaf = FLAG_POLICY[flag]
        for parent in parents:
            table = table.setdefault(parent, {})
        table[leaf] = prepared.settings[flag]
        if leaf == "pages_in_flight":
            table.pop("concurrency", None)  # the deprecated key the flag replaces
    return doc


def describe(spec: JobSpec) -> str | None:
    """One line for ``status``: which config the job ran with and what flags overrode."""
    stored = spec.params.get(CONFIG_KEY)
    if not isinstance(stored, Mapping):
        return None
    overrides = stored.get("overrides") or []
    settings = stored.get("settings") or {}
    shown = ", ".join(f"--{o.replace('_', '-')}={settings.get(o)}" for o in overrides)
    return f"config: {stored.get('file')}" + (
        f"; overridden on the command line: {shown}" if shown else ""
    )


def secrets(options: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """Values of the environment variables the options name (to redact from logs)."""
    names: list[str] = []
    key_env = options.get("api_key_env", "STATESYNC_API_KEY")
    if isinstance(key_env, str) and key_env:
        names.append(key_env)
    auth = options.get("auth")
    if isinstance(auth, Mapping):
        names += [v for k, v in auth.items() if k.endswith("_env") and isinstance(v, str)]
    return [env[n] for n in names if env.get(n)]


def build_connector(prepared: Prepared, env: Mapping[str, str]) -> BaseConnector:
    """The job's connector; a config error names the job config file it came from."""
    stored = prepared.params.get(CONFIG_KEY)
    try:
        connector = open_connector(prepared.connector, prepared.options, env)
    except ConfigurationError as exc:
        if not isinstance(stored, Mapping):
            raise
        raise ConfigurationError(f"{stored.get('file')}: {exc}") from None
    offered = set(connector.entities())
    tables = prepared.options.get("entities")
    missing = [e for e in prepared.entities if isinstance(tables, Mapping) and e not in offered]
    if missing:
        raise ConfigurationError(
            f"{stored.get('file') if isinstance(stored, Mapping) else 'job'}: job.entities: "
            f"{missing[0]!r} is not an entity of connector {prepared.connector!r}"
        )
    return connector


def with_options(prepared: Prepared, pairs: Sequence[str]) -> Prepared:
    """``--option KEY=VALUE`` laid over the connector options (dotted keys nest)."""
    if not pairs:
        return prepared
    options = thaw(prepared.options)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is a string
        *parents, leaf = key.strip().split(".")
        table = options
        for parent in parents:
            table = table.setdefault(parent, {})
            if not isinstance(table, dict):
                raise click.BadParameter(
                    f"{key!r}: {parent!r} is not a table", param_hint="--option"
                )
        table[leaf] = value
    params = dict(prepared.params)
    params["connector"] = {"name": prepared.connector, "options": options}
    return attrs.evolve(prepared, options=options, params=params)


def config_file(prepared: Prepared) -> str | None:
    """The job config file the job came from, if any."""
    stored = prepared.params.get(CONFIG_KEY)
    return str(stored.get("file")) if isinstance(stored, Mapping) else None
