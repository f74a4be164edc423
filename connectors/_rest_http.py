"""Reading REST answers: body paths, timestamps, ``Link`` headers, rate and error info."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from statesync._ratelimit import retry_after_from_headers
from statesync.errors import (
    BadRequestError,
    ConnectorError,
    ErrorKind,
    error_for_kind,
    error_for_status,
)

TimeFormat = Literal["iso8601", "epoch_s", "epoch_ms"]
TIME_FORMATS: tuple[TimeFormat, ...] = ("iso8601", "epoch_s", "epoch_ms")
_MISSING: Any = object()


def dig(body: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``body`` (``""``: the body itself), or a sentinel
    :data:`MISSING` when a step is absent."""
    value = body
    for step in (s for s in path.split(".") if s):
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def missing(value: Any) -> bool:
    return value is _MISSING or value is None


def parse_time(value: Any, fmt: str) -> datetime:
    """A record's timestamp in ``fmt``; raises ``ValueError`` when it is not one."""
    if fmt == "iso8601":
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO 8601 string, got {value!r}")
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected epoch {fmt[6:]}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected epoch {fmt[6:]}, got {value!r}")
    return datetime.fromtimestamp(number / (1000 if fmt == "epoch_ms" else 1), UTC)


def format_time(moment: datetime, fmt: str) -> str | int:
    """``moment`` as a request parameter in ``fmt`` (naive means UTC)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if fmt == "iso8601":
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    seconds = moment.timestamp()
    return int(seconds * 1000) if fmt == "epoch_ms" else int(seconds)


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_REL = re.compile(r""";\s*rel\s*=\s*"?([^";]+)"?""", re.IGNORECASE)


def link_next(value: str | None) -> str | None:
    """The target of ``rel="next"`` in an RFC 8288 ``Link`` header, if any."""
    if not value:
        return None
    for target, params in _LINK.findall(value):
        rels = " ".join(_REL.findall(params)).lower().split()
        if "next" in rels:
            return str(target)
    return None


# -- errors -------------------------------------------------------------------------


def error_message(body: Any, error_path: str | None) -> str | None:
    """A short message out of an error body: at ``error_path``, or common shapes."""
    found = dig(body, error_path) if error_path else _MISSING
    if missing(found):
        found = dig(body, "error")
    if missing(found):
        found = dig(body, "message")
    if isinstance(found, Mapping):
        found = found.get("message") or found.get("code") or found
    if missing(found):
        return None
    text = found if isinstance(found, str) else str(found)
    return text[:300]


def error_for_answer(
    response: httpx.Response, described: str, error_path: str | None
) -> ConnectorError:
    """The typed error of a non-2xx answer, keyed by status."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = error_message(body, error_path)
    message = f"HTTP {status}" + (f": {detail}" if detail else "")
    retry = retry_after_from_headers(response.headers) if status in (429, 503) else None
    return error_for_status(status, message, retry_after=retry, request=described)


def error_in_body(
    body: Any,
    error_path: str,
    code_path: str | None,
    kinds: Mapping[str, ErrorKind],
    described: str,
    headers: Mapping[str, str],
) -> ConnectorError | None:
    """The error an API put in a 2xx body at ``error_path``, or ``None`` when absent."""
    found = dig(body, error_path)
    if missing(found) or found in ([], {}, "", False):
        return None
    code = dig(body, code_path) if code_path else _MISSING
    if missing(code) and isinstance(found, Mapping):
        code = found.get("code", _MISSING)
    kind = kinds.get(str(code)) if not missing(code) else None
    cls = error_for_kind(kind) if kind is not None else BadRequestError
    detail = error_message(body, error_path) or "error"
    retry = retry_after_from_headers(headers) if kind is ErrorKind.RATE_LIMITED else None
    return cls(f"HTTP 200 with an error: {detail}", request=described, retry_after=retry)
