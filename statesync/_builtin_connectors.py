"""The shipped connectors as plugins: factories ``(options, env) -> BaseConnector``.

Registered in ``pyproject.toml`` under the ``statesync.connectors`` entry point group,
like any third-party connector. Options are what a job config's ``[connector.options]``
holds (and the command line's ``--base-url`` / ``--entity`` / ``--graphql-config``);
keys come from the environment variable named by ``api_key_env`` (default
``STATESYNC_API_KEY``; ``""`` for none), never from the options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from statesync.connector import BaseConnector
from statesync.errors import ConfigurationError

DEFAULT_KEY_ENV: Final = "STATESYNC_API_KEY"
_COMMON: Final = ("base_url", "entities", "api_key_env")


def api_key(
    name: str, options: Mapping[str, Any], env: Mapping[str, str], *, required: bool
) -> str | None:
    """The key from ``$api_key_env``; a required one that is unset is a clear error."""
    var = options.get("api_key_env", DEFAULT_KEY_ENV)
    if var is not None and not isinstance(var, str):
        raise ConfigurationError(f"api_key_env: expected an environment variable name, got {var!r}")
    if not var:
        if required:
            raise ConfigurationError(f"api_key_env: connector {name!r} needs an API key")
        return None
    key = env.get(var)
    if not key and required:
        raise ConfigurationError(
            f"connector {name!r} needs an API key: set {var} (keys are never stored with "
            "the job, so resume needs it again)"
        )
    return key or None


def _check(name: str, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in options:
        if key not in allowed:
            raise ConfigurationError(
                f"{key}: unknown option of connector {name!r}; expected one of: "
                + ", ".join(sorted(allowed))
            )


def _names(options: Mapping[str, Any]) -> tuple[str, ...] | None:
    entities = options.get("entities")
    if entities is None:
        return None
    if isinstance(entities, Mapping):
        return tuple(entities)
    if not isinstance(entities, list | tuple) or not all(isinstance(e, str) for e in entities):
        raise ConfigurationError(f"entities: expected a list of entity names, got {entities!r}")
    return tuple(entities)


def _text(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {value!r}")
    return value


def stripe(options: Mapping[str, Any], env: Mapping[str, str]) -> BaseConnector:
    from statesync.connectors.stripe import DEFAULT_ENTITIES, StripeConnector

    _check("stripe", options, _COMMON)
    key = api_key("stripe", options, env, required=True)
    assert key is not None
    names = _names(options) or DEFAULT_ENTITIES
    return StripeConnector(key, base_url=_text(options, "base_url"), entities=names)


def close(options: Mapping[str, Any], env: Mapping[str, str]) -> BaseConnector:
    from statesync.connectors.close import DEFAULT_ENTITIES, CloseConnector

    _check("close", options, (*_COMMON, "skip_cap", "fields", "pace_at_remaining"))
    key = api_key("close", options, env, required=True)
    assert key is not None
    extra: dict[str, Any] = {}
    for name in ("skip_cap", "pace_at_remaining"):
        if name in options:
            if type(options[name]) is not int:
                raise ConfigurationError(f"{name}: expected an integer, got {options[name]!r}")
            extra[name] = options[name]
    if "fields" in options:
        fields = options["fields"]
        if not isinstance(fields, Mapping) or not all(
            isinstance(v, list) and all(isinstance(f, str) for f in v) for v in fields.values()
        ):
            raise ConfigurationError("fields: expected a table of entity = [field names]")
        extra["fields"] = {k: list(v) for k, v in fields.items()}
    base = _text(options, "base_url")
    if base:
        extra["base_url"] = base
    return CloseConnector(key, entities=_names(options) or DEFAULT_ENTITIES, **extra)


def graphql(options: Mapping[str, Any], env: Mapping[str, str]) -> BaseConnector:
    from statesync.connectors._graphql_config import graphql_from_mapping, load_graphql_config
    from statesync.connectors.graphql import GraphQLConnector

    allowed = (*_COMMON, "graphql_config", "auth_header", "auth_scheme")
    _check("graphql", options, allowed)
    url = _text(options, "base_url")
    tables = options.get("entities")
    path = _text(options, "graphql_config")
    if not url or (path is None and not isinstance(tables, Mapping)):
        raise ConfigurationError(
            "the graphql connector needs base_url (the endpoint) and its entities: "
            "[entities.NAME] tables, or --graphql-config FILE"
        )
    if isinstance(tables, Mapping):
        top = {k: options[k] for k in ("auth_header", "auth_scheme") if k in options}
        config = graphql_from_mapping({**top, "entities": dict(tables)}, source="connector options")
    else:
        assert path is not None
        config = load_graphql_config(path)
    # An open endpoint needs no key: the header is sent only when the key is set.
    key = api_key("graphql", options, env, required=False)
    headers = config.headers(key) if key else {}
    return GraphQLConnector(url, entities=config.entities, headers=headers)


def rest(options: Mapping[str, Any], env: Mapping[str, str]) -> BaseConnector:
    from statesync.connectors._rest_config import rest_from_mapping

    settings = rest_from_mapping(
        options, source="the connector options", prefix="connector.options."
    )
    try:
        return settings.connector(env)
    except ConfigurationError as exc:
        raise ConfigurationError(f"connector.options.{exc}") from None
