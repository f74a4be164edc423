"""Connector plugins: names resolve through entry points, or ``module:factory``.

A connector plugin is a factory ``(options, env) -> BaseConnector``: ``options`` are
the job's connector options (plain, JSON-compatible, never secrets; stored with the
job so a resume rebuilds the same connector), ``env`` the environment its secrets are
read from. Installed packages register factories in the entry point group
``statesync.connectors``; statesync's own connectors are registered the same way, so the
core holds no list of names.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Final, TypeAlias

from statesync._frozen import thaw
from statesync._models import JobSpec
from statesync.connector import BaseConnector
from statesync.errors import ConfigurationError

GROUP: Final = "statesync.connectors"
ConnectorPlugin: TypeAlias = Callable[[Mapping[str, Any], Mapping[str, str]], BaseConnector]
"""A factory building a connector from the job's options and the environment."""
JobConnectorFactory: TypeAlias = Callable[[JobSpec], BaseConnector]
"""What the Inngest adapter calls per step: a connector for a job."""


def installed_connectors() -> list[str]:
    """Names of every connector registered in the ``statesync.connectors`` group."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def resolve_connector(name: str) -> ConnectorPlugin:
    """The factory ``name`` stands for: an installed plugin (built-ins included) or a
    ``module:factory`` path."""
    if ":" in name:
        return _import(name)
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        known = ", ".join(installed_connectors()) or "none"
        raise ConfigurationError(
            f"unknown connector {name!r}; installed: {known} (or give module:factory)"
        )
    try:
        factory = found[0].load()
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"connector {name!r} is registered as {found[0].value!r}, which cannot be loaded: {exc}"
        ) from None
    return _callable(name, factory)


def _import(path: str) -> ConnectorPlugin:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"connector {path!r}: cannot import {module_name!r}: {exc}"
        ) from None
    factory: object = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ConfigurationError(f"connector {path!r}: {module_name} has no {attr!r}")
    return _callable(path, factory)


def _callable(name: str, factory: object) -> ConnectorPlugin:
    if not callable(factory):
        raise ConfigurationError(f"connector {name!r} is not a factory: {factory!r}")
    return factory


def open_connector(
    name: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> BaseConnector:
    """Build connector ``name`` from ``options``, reading secrets from ``env``."""
    factory = resolve_connector(name)
    connector = factory(dict(options), os.environ if env is None else env)
    if not isinstance(connector, BaseConnector):
        raise ConfigurationError(
            f"connector {name!r}'s factory returned {type(connector).__name__}, not a BaseConnector"
        )
    return connector


def connector_options(spec: JobSpec) -> dict[str, Any]:
    """The connector options a job was created with.

    Jobs written before job configs existed stored ``base_url`` / ``graphql_config``
    at the top of their params; those are the options, and the job's entities too.
    """
    stored = spec.params.get("connector")
    if isinstance(stored, Mapping):
        # Thawed: the job's params are frozen (tuples for lists); options are read as TOML.
        options: dict[str, Any] = thaw(stored.get("options") or {})
        return options
    legacy = {k: v for k, v in spec.params.items() if k in ("base_url", "graphql_config")}
    return {**legacy, "entities": list(spec.entities)}


def job_factory(
    factory: ConnectorPlugin | JobConnectorFactory | str,
    options: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> JobConnectorFactory:
    """A per-job factory for the Inngest adapter from a plugin, a name or a job factory.

    A plugin (two parameters) gets the options stored with the job with ``options``
    laid over them (a job requested by an event stores none but its entities), and
    ``env`` (default: the process environment at call time); a job factory is returned
    as is.
    """
    given: Callable[..., BaseConnector] = (
        resolve_connector(factory) if isinstance(factory, str) else factory
    )
    if _arity(given) < 2:
        return given

    def build(spec: JobSpec) -> BaseConnector:
        merged = {**connector_options(spec), **(options or {})}
        connector = given(merged, os.environ if env is None else env)
        if not isinstance(connector, BaseConnector):
            raise ConfigurationError(
                f"connector {spec.connector!r}'s factory returned no connector"
            )
        return connector

    return build


def _arity(factory: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds)
