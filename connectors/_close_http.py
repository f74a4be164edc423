"""Reading Close answers: the ``RateLimit`` header, error bodies and list bodies."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import httpx
from attrs import frozen

from statesync.errors import (
    ConnectorError,
    MalformedResponseError,
    error_for_status,
    parse_retry_after,
)

_PART = re.compile(r"^\s*([A-Za-z_-]+)\s*=\s*\"?([^\"]*)\"?\s*$")


@frozen
class RateLimit:
    """One ``RateLimit: limit=L, remaining=R, reset=S`` header; ``reset`` in seconds."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None


def parse_rate_limit(value: str | None) -> RateLimit | None:
    """Parse Close's ``RateLimit`` header; ``,`` and ``;`` both separate its parts.

    Unknown parts and unparsable numbers are ignored rather than failing a page that
    was otherwise answered; ``None`` when nothing usable is present.
    """
    if not value:
        return None
    parts: dict[str, str] = {}
    for chunk in re.split(r"[,;]", value):
        found = _PART.match(chunk)
        if found is not None:
            parts[found.group(1).lower()] = found.group(2)
    parsed = RateLimit(
        limit=_int(parts.get("limit")),
        remaining=_int(parts.get("remaining")),
        reset=_float(parts.get("reset")),
    )
    return None if parsed == RateLimit() else parsed


def _float(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _int(raw: str | None) -> int | None:
    value = _float(raw)
    return None if value is None else int(value)


def retry_delay(headers: httpx.Headers) -> float | None:
    """Seconds a 429 asks for: the larger of ``Retry-After`` and the ``RateLimit`` reset.

    Close sends both; coming back before either says is how a client earns another 429.
    """
    candidates = [parse_retry_after(headers.get("Retry-After"))]
    rate = parse_rate_limit(headers.get("RateLimit"))
    if rate is not None and rate.reset:
        candidates.append(rate.reset)
    delays = [d for d in candidates if d is not None and d > 0]
    return max(delays) if delays else None


def error_from(response: httpx.Response, described: str) -> ConnectorError:
    """The typed error for a non-2xx answer, with Close's own message when it gave one."""
    status = response.status_code
    message = f"Close answered HTTP {status}"
    detail = _error_detail(response)
    if detail:
        message = f"{message}: {detail}"
    delay = retry_delay(response.headers) if status == 429 else None
    return error_for_status(status, message, retry_after=delay, request=described)


def _error_detail(response: httpx.Response) -> str | None:
    """``{"error": "..."}`` or ``{"field-errors": {field: message}}``, shortened."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    parts = []
    if isinstance(body.get("error"), str) and body["error"]:
        parts.append(body["error"])
    fields = body.get("field-errors")
    if isinstance(fields, Mapping):
        parts.extend(f"{name}: {problem}" for name, problem in fields.items())
    return "; ".join(parts)[:500] or None


@frozen
class ListBody:
    items: list[Mapping[str, Any]]
    has_more: bool
    total: int | None


def read_list(response: httpx.Response, described: str, required: tuple[str, ...]) -> ListBody:
    """Validate a list answer; every item needs ``required`` fields as strings."""
    try:
        body = response.json()
    except ValueError:
        raise MalformedResponseError("response is not JSON", request=described) from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise MalformedResponseError("response has no 'data' list", request=described)
    has_more = body.get("has_more")
    if not isinstance(has_more, bool):
        raise MalformedResponseError("response has no boolean 'has_more'", request=described)
    for item in body["data"]:
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in required):
            wanted = ", ".join(required)
            raise MalformedResponseError(
                f"a list item is not an object with string {wanted}", request=described
            )
    total = body.get("total_results")
    total = total if isinstance(total, int) and not isinstance(total, bool) else None
    return ListBody(body["data"], has_more, total)
