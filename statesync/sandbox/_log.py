"""The request log: one entry per API request, never holding an API key."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import attrs


def _plain_dict(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


@attrs.frozen
class RequestLogEntry:
    """One API request.

    ``started``/``ended`` come from ``time.monotonic()`` (compare them across
    entries, e.g. to check a client waited for ``Retry-After``); ``wall_time``
    is ``time.time()`` at the start.  ``key_id`` is a 12-hex-digit SHA-256
    prefix of the presented key.  ``status`` is 0 when the connection was
    dropped without an answer; ``fault`` names the injected fault, if any.
    """

    started: float
    ended: float
    wall_time: float
    method: str
    path: str
    query: Mapping[str, str] = attrs.field(converter=_plain_dict)
    status: int
    entity: str | None = None
    key_id: str | None = None
    fault: str | None = None
    number: int = 0

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class RequestLog:
    """Append-only, thread-safe list of entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RequestLogEntry] = []

    def append(self, entry: RequestLogEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[RequestLogEntry]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
