"""Checks every job command runs before it opens (let alone writes) anything.

Click callbacks turn bad values into usage errors (exit 2) naming the option; the
entity and policy checks run before the store or destination is touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from statesync._instances import validate_job_id
from statesync._namespace import table_name, validate_namespace
from statesync._urls import check_destination_url, check_store_url
from statesync.destinations._names import validate_entity
from statesync.errors import ConfigurationError

POSITIVE_INT = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
NON_NEGATIVE_FLOAT = click.FloatRange(min=0)


def _bad(exc: ConfigurationError, param: click.Parameter) -> click.BadParameter:
    return click.BadParameter(str(exc), param=param)


def check_store(_: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_store_url(value)
    except ConfigurationError as exc:
        raise _bad(exc, param) from None


def check_dest(_: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_destination_url(value)
    except ConfigurationError as exc:
        raise _bad(exc, param) from None


def check_job_id(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else validate_job_id(value)
    except ConfigurationError as exc:
        raise _bad(exc, param) from None


def check_namespace(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return value if not value else validate_namespace(value)
    except ConfigurationError as exc:
        raise _bad(exc, param) from None


def check_entities(
    _: click.Context, param: click.Parameter, value: Sequence[str]
) -> tuple[str, ...]:
    seen: set[str] = set()
    for entity in value:
        try:
            validate_entity(entity)
        except ConfigurationError as exc:
            raise _bad(exc, param) from None
        if entity in seen:
            raise click.BadParameter(f"entity {entity!r} is given twice", param=param)
        seen.add(entity)
    return tuple(value)


def check_tables(entities: Sequence[str], namespace: str | None) -> None:
    """Every entity's table name in ``namespace`` is valid (a prefix makes names longer)."""
    for entity in entities:
        table_name(entity, namespace)
