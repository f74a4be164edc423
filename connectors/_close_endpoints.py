"""The Close endpoints the connector knows, and how each filters by date.

Entity names must be valid table names, so typed endpoints are spelled with
underscores: ``activity_call`` is ``activity/call/``, ``custom_field_lead`` is
``custom_field/lead/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

from attrs import frozen

from statesync._models import SyncMode
from statesync.errors import ConfigurationError

FilterStyle = Literal["params", "query", "after"]
"""How an endpoint takes a lower date bound ``field >= value``:

``params``: ``{field}__gte=value``; ``query``: the lead search ``query='field >= "value"'``;
``after``: ``{field}__gt=value - 1µs`` (activities only take strict bounds; Close dates
have microsecond precision, so this is the same set).
"""

CREATED = "date_created"
UPDATED = "date_updated"


@frozen
class Endpoint:
    """One Close list endpoint.

    ``incremental`` is the date field an incremental sync filters and sorts on, or
    ``None`` when the endpoint is always synced in full (small lists, or no filter).
    """

    entity: str
    path: str
    incremental: str | None
    style: FilterStyle = "params"

    def sort_key(self, mode: SyncMode) -> str:
        """The field pages are ordered by; windows and checkpoints use it too."""
        if mode is SyncMode.INCREMENTAL and self.incremental is not None:
            return self.incremental
        return CREATED

    def lower_bound(self, field: str, value: str) -> dict[str, str]:
        """Query parameters selecting records with ``field >= value``."""
        if self.style == "query":
            return {"query": f'{field} >= "{value}"'}
        if self.style == "after":
            before = datetime.fromisoformat(value) - timedelta(microseconds=1)
            return {f"{field}__gt": before.isoformat()}
        return {f"{field}__gte": value}


def _activity(kind: str) -> Endpoint:
    suffix = f"{kind}/" if kind else ""
    name = f"activity_{kind}" if kind else "activity"
    return Endpoint(name, f"activity/{suffix}", CREATED, "after")


def _full(entity: str, path: str) -> Endpoint:
    return Endpoint(entity, path, None)


ENDPOINTS: Mapping[str, Endpoint] = {
    e.entity: e
    for e in (
        Endpoint("lead", "lead/", UPDATED, "query"),
        _full("contact", "contact/"),
        Endpoint("opportunity", "opportunity/", UPDATED),
        _activity(""),
        *(_activity(kind) for kind in ("call", "email", "note", "meeting", "sms")),
        *(
            _full(f"custom_field_{owner}", f"custom_field/{owner}/")
            for owner in ("lead", "contact", "opportunity", "activity", "shared")
        ),
        _full("user", "user/"),
    )
}

DEFAULT_ENTITIES = ("lead", "contact", "opportunity", "activity", "user")


def endpoint(entity: str) -> Endpoint:
    try:
        return ENDPOINTS[entity]
    except KeyError:
        known = ", ".join(sorted(ENDPOINTS))
        raise ConfigurationError(f"unknown Close entity {entity!r}; known: {known}") from None
