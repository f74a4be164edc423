"""Reads a GraphQL ``data`` object into a :class:`Page`, following a :class:`QueryPlan`.

Everything that does not match the plan is a :class:`MalformedResponseError` naming the
path it was looking at: a missing list is never read as an empty page, because an empty
page ends the sync and would silently drop the rest of the entity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from statesync._models import Page, PageRequest, Record
from statesync.errors import MalformedResponseError

from ._graphql_style import Pagination, PaginationStyle, QueryPlan

STYLE_KEY = "style"
"""``FetchState.metadata`` key holding the pagination style the checkpoint was taken with."""


@frozen
class RecordFields:
    """Which fields of a record are its id and its timestamps."""

    id: str
    updated: str | None = None
    created: str | None = None


def read_page(
    data: object, plan: QueryPlan, fields: RecordFields, request: PageRequest, size: int, shown: str
) -> Page:
    """The page in ``data``; ``size`` is the page size that was asked for."""
    value = _dig(data, plan.path, shown)
    pagination = plan.pagination
    items = _items(value, pagination, plan.where, shown)
    records = tuple(_record(item, fields, plan.where, shown) for item in items)
    metadata = {STYLE_KEY: pagination.style.value}
    if pagination.style is PaginationStyle.OFFSET:
        start = request.state.offset or 0
        # No count comes back with a plain list: a short page is the only end marker.
        return Page(
            records,
            has_more=len(records) >= size,
            next_offset=start + len(records),
            metadata=metadata,
        )
    cursor, has_next = _page_info(value, pagination, request.state.cursor, bool(records), shown)
    total = value.get(pagination.total_key) if pagination.total_key else None
    if request.window is not None and (request.window.lower, request.window.upper) != (None, None):
        total = None  # a bounded window's count, not the entity's
    return Page(
        records,
        has_more=has_next,
        next_cursor=cursor,
        metadata=metadata,
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


def _dig(data: object, path: Sequence[str], shown: str) -> Any:
    value = data
    for depth, key in enumerate(path):
        here = ".".join(path[: depth + 1])
        if not isinstance(value, Mapping) or key not in value:
            raise MalformedResponseError(
                f"response data has no {here} (looking for the list at {'.'.join(path)})",
                request=shown,
            )
        value = value[key]
        if value is None:
            raise MalformedResponseError(
                f"response data has null at {here} (looking for the list at "
                f"{'.'.join(path)}): does the parent object exist?",
                request=shown,
            )
    return value


def _items(value: Any, pagination: Pagination, where: str, shown: str) -> list[Any]:
    if pagination.items is None:
        if not isinstance(value, list):
            raise MalformedResponseError(f"{where} is not a list", request=shown)
        return value
    items = value.get(pagination.items) if isinstance(value, Mapping) else None
    if not isinstance(items, list):
        raise MalformedResponseError(f"{where}.{pagination.items} is not a list", request=shown)
    if pagination.node_key is None:
        return items
    nodes = [e.get(pagination.node_key) if isinstance(e, Mapping) else None for e in items]
    if any(node is None for node in nodes):
        raise MalformedResponseError(
            f"an item of {where}.{pagination.items} has no {pagination.node_key}", request=shown
        )
    return nodes


def _page_info(
    value: Mapping[str, Any], pagination: Pagination, before: str | None, got: bool, shown: str
) -> tuple[str | None, bool]:
    keys = pagination.relay
    assert keys is not None  # Relay plans always carry their pageInfo keys
    info = value.get(keys.page_info)
    has_next = info.get(keys.has_next_page) if isinstance(info, Mapping) else None
    end = info.get(keys.end_cursor) if isinstance(info, Mapping) else None
    if not isinstance(has_next, bool) or not (end is None or isinstance(end, str)):
        raise MalformedResponseError(
            "pageInfo lacks a boolean hasNextPage or a string endCursor", request=shown
        )
    if has_next and (end is None or (end == before and not got)):
        # Following it would ask for the same page forever.
        raise MalformedResponseError(
            "hasNextPage is true but endCursor did not move past the last page", request=shown
        )
    # An empty last page has a null endCursor: keep the cursor we came with.
    return (end if end is not None else before), has_next


def _record(item: object, fields: RecordFields, where: str, shown: str) -> Record:
    if not isinstance(item, Mapping):
        raise MalformedResponseError(f"a record of {where} is not an object", request=shown)
    record_id = item.get(fields.id)
    if isinstance(record_id, bool) or not isinstance(record_id, str | int):
        raise MalformedResponseError(
            f"a record of {where} has no string or integer {fields.id!r}", request=shown
        )
    return Record(
        id=str(record_id),
        data=dict(item),
        updated_at=_timestamp(item, fields.updated, shown),
        created_at=_timestamp(item, fields.created, shown),
    )


def _timestamp(item: Mapping[str, Any], name: str | None, shown: str) -> datetime | None:
    value = item.get(name) if name else None
    if value is None:
        return None
    moment = _moment(value)
    if moment is None:
        raise MalformedResponseError(
            f"record field {name!r} is not an ISO 8601 date or a Unix time: {str(value)[:40]!r}",
            request=shown,
        )
    return moment


def _moment(value: object) -> datetime | None:
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None
