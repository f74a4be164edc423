"""One parser for what an API says about its rate limit, for every connector.

Two questions, answered from a response's headers:

* :func:`retry_after_from_headers`: how long the server asked us to wait before the
  next request (``Retry-After`` in seconds or as an HTTP-date; or, when the headers say
  nothing is left, the time until the quota resets). Connectors put it on a
  :class:`~statesync.errors.RateLimitedError`; the retry policy jitters and caps it.
* :func:`rate_info_from_headers`: the account's quota as a :class:`RateInfo` (limit,
  remaining, seconds until reset), which the engine feeds to the account's budget.

Header forms understood (names case-insensitive):

* ``Retry-After: 7`` or ``Retry-After: Wed, 21 Oct 2026 07:28:00 GMT``;
* the IETF fields: ``RateLimit: limit=100, remaining=5, reset=30`` (Close, with ``,``
  or ``;`` between the parts), the later drafts' ``RateLimit: "default";r=5;t=30``,
  the older ``RateLimit-Limit``/``-Remaining``/``-Reset`` and ``RateLimit-Policy:
  100;w=60`` (a limit when no other field gives one);
* ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` (GitHub and many others): ``Reset``
  is epoch seconds; a value too small to be an epoch is read as seconds from now.

GitHub's GraphQL API reports an exhausted quota as an HTTP 200 whose ``errors`` have
``type: "RATE_LIMITED"``, with ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset``:
:func:`statesync.connectors._graphql_errors.error_from_graphql` types the body, these functions
read the headers. Non-finite, negative and absurd values (more than a week) are no hint:
a client that believes ``Retry-After: inf`` never comes back.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping

from statesync._models import RateInfo

__all__ = ["rate_info_from_headers", "retry_after_from_headers"]

ABSURD_WAIT = 7 * 86400.0
"""Seconds beyond which a server's wait or reset is taken for garbage, not a hint."""
_EPOCH_FLOOR = 1e9
"""An ``X-RateLimit-Reset`` at least this large is epoch seconds (2001 on), else a delay."""
_PART = re.compile(r'^\s*"?([A-Za-z_-]+)"?\s*(?:=\s*"?([^"]*)"?)?\s*$')
_ALIASES = {"r": "remaining", "t": "reset", "q": "limit", "w": "window"}


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Seconds the server asked to wait, or ``None`` when it did not (validly) say.

    The larger of ``Retry-After`` and, when the headers say no request is left
    (``remaining`` 0), the time until the quota resets: coming back before either is how
    a client earns another refusal.
    """
    lower = _lowered(headers)
    candidates = [parse_retry_after(lower.get("retry-after"), now=now)]
    info = rate_info_from_headers(lower, now=now)
    if info is not None and info.remaining == 0 and info.reset:
        candidates.append(info.reset)
    found = [c for c in candidates if c is not None]
    return max(found) if found else None


def rate_info_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateInfo | None:
    """The quota the headers report, or ``None`` when they report none.

    The IETF ``RateLimit`` field wins over the ``RateLimit-*`` fields, which win over
    ``X-RateLimit-*``; within one family a bad value leaves only that value out.
    """
    lower = _lowered(headers)
    for reader in (_ietf_field, _ietf_split, _x_ratelimit):
        info = reader(lower, time.time() if now is None else now)
        if info is not None:
            return info
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from one ``Retry-After`` value (delta-seconds or HTTP-date).

    ``0``, negative, non-finite and absurd delays, dates in the past and garbage all mean
    "no hint": returning 0 would make a client hammer a server that asked it to slow
    down, and ``inf`` would make it wait forever.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return _wait(seconds) if seconds > 0 else None


def _wait(seconds: float | None) -> float | None:
    """``seconds`` when it is a plausible wait (0 included), else ``None``."""
    if seconds is None or not math.isfinite(seconds) or not 0 <= seconds <= ABSURD_WAIT:
        return None
    return seconds


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip().strip('"'))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _count(raw: str | None) -> int | None:
    value = _number(raw)
    return None if value is None or value > 2**53 else int(value)


def _made(limit: int | None, remaining: int | None, reset: float | None) -> RateInfo | None:
    info = RateInfo(limit=limit, remaining=remaining, reset=_wait(reset))
    return None if info == RateInfo() else info


def _parts(value: str) -> dict[str, str]:
    """``limit=1, remaining=2; reset=3`` or ``"default";r=2;t=3`` as a dict."""
    parts: dict[str, str] = {}
    for piece in re.split(r"[,;]", value):
        found = _PART.match(piece)
        if found is not None and found.group(2) is not None:
            key = found.group(1).lower()
            parts[_ALIASES.get(key, key)] = found.group(2)
    return parts


def _policy_limit(lower: Mapping[str, str]) -> int | None:
    policy = lower.get("ratelimit-policy")
    if not policy:
        return None
    first = re.split(r"[,;]", policy)[0]
    return _count(first) or _count(_parts(policy).get("limit"))


def _ietf_field(lower: Mapping[str, str], now: float) -> RateInfo | None:
    value = lower.get("ratelimit")
    if not value:
        return None
    parts = _parts(value)
    limit = _count(parts.get("limit")) or _policy_limit(lower)
    return _made(limit, _count(parts.get("remaining")), _number(parts.get("reset")))


def _ietf_split(lower: Mapping[str, str], now: float) -> RateInfo | None:
    if not any(k in lower for k in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")):
        return None
    limit = _count(lower.get("ratelimit-limit")) or _policy_limit(lower)
    reset = _number(lower.get("ratelimit-reset"))
    return _made(limit, _count(lower.get("ratelimit-remaining")), reset)


def _x_ratelimit(lower: Mapping[str, str], now: float) -> RateInfo | None:
    names = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
    if not any(k in lower for k in names):
        return None
    reset = _number(lower.get("x-ratelimit-reset"))
    if reset is not None and reset >= _EPOCH_FLOOR:
        # Epoch seconds are whole seconds: a reset "now" still means up to a second away.
        reset = max(0.0, reset - now)
    return _made(
        _count(lower.get("x-ratelimit-limit")), _count(lower.get("x-ratelimit-remaining")), reset
    )
