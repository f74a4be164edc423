"""Reading Close answers: the ``RateLimit`` header, error bodies and list bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from attrs import frozen

from statesync import _json
from statesync._models import RateInfo
from statesync._ratelimit import rate_info_from_headers, retry_after_from_headers
from statesync.errors import ConnectorError, MalformedResponseError, error_for_status


def parse_rate_limit(value: str | None) -> RateInfo | None:
    """Parse Close's ``RateLimit`` header; ``,`` and ``;`` both separate its parts.

    Unknown parts and unparsable numbers are ignored rather than failing a page that
    was otherwise answered; ``None`` when nothing usable is present.
    """
    return rate_info_from_headers({"RateLimit": value}) if value else None


def retry_delay(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429 asks for: the larger of ``Retry-After`` and the ``RateLimit`` reset.

    Close sends both; coming back before either says is how a client earns another 429.
    """
    return retry_after_from_headers(headers)


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
        body = _json.loads(response.content)
    except ValueError:
        raise MalformedResponseError("response is not JSON", request=described) from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise MalformedResponseError("response has no 'data' list", request=described)
    has_more = body.get("has_more")
    if not isinstance(has_more, bool):
        raise MalformedResponseError("response has no boolean 'has_more'", request=described)
    for item in body["data"]:
        # Plain loops: a generator per item was a tenth of the page's parsing.
        if isinstance(item, dict):
            for field in required:
                if not isinstance(item.get(field), str):
                    break
            else:
                continue
        wanted = ", ".join(required)
        raise MalformedResponseError(
            f"a list item is not an object with string {wanted}", request=described
        )
    total = body.get("total_results")
    total = total if isinstance(total, int) and not isinstance(total, bool) else None
    return ListBody(body["data"], has_more, total)
