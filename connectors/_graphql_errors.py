"""GraphQL ``errors`` lists, typed into statesync's error tree.

GraphQL servers report most failures in a 200 whose body holds ``errors``; what the
failure *is* lives in ``extensions.code`` (Apollo, Hasura, Shopify...), a top-level
``type`` (GitHub) or only in the message. Codes are read first, messages second, and
the most actionable kind wins when several errors disagree: a rate limit must be waited
out even when it comes with other errors, and an auth failure must not be retried.
:func:`map_gql_error` maps the rest of gql's transport exceptions, and calls
:func:`error_from_graphql` for its ``TransportQueryError``, so every caller of gql gets
the same answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gql.transport import exceptions as gqlx

from statesync._internal import internal_error
from statesync.connectors._http_errors import map_httpx_error
from statesync.errors import (
    AuthError,
    BadRequestError,
    ConnectorError,
    ErrorKind,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
    error_for_status,
    parse_retry_after,
)

_CODES: Mapping[ErrorKind, frozenset[str]] = {
    ErrorKind.RATE_LIMITED: frozenset(
        {"RATE_LIMITED", "RATE_LIMIT_EXCEEDED", "RATELIMITED", "THROTTLED", "TOO_MANY_REQUESTS"}
    ),
    ErrorKind.AUTH: frozenset(
        {
            "UNAUTHENTICATED",
            "UNAUTHORIZED",
            "FORBIDDEN",
            "ACCESS_DENIED",
            "PERMISSION_DENIED",
            "INVALID_TOKEN",
            "AUTHENTICATION_ERROR",
            "AUTHORIZATION_ERROR",
        }
    ),
    ErrorKind.TRANSIENT: frozenset(
        {
            "INTERNAL_SERVER_ERROR",
            "INTERNAL_ERROR",
            "SERVICE_UNAVAILABLE",
            "UNAVAILABLE",
            "TIMEOUT",
            "TIMED_OUT",
            "DEADLINE_EXCEEDED",
            "DOWNSTREAM_SERVICE_ERROR",
            "TEMPORARILY_UNAVAILABLE",
            "MAX_COST_EXCEEDED_TEMPORARILY",
        }
    ),
}
_MESSAGES: Mapping[ErrorKind, re.Pattern[str]] = {
    ErrorKind.RATE_LIMITED: re.compile(r"rate.?limit|throttl|too many requests", re.I),
    ErrorKind.AUTH: re.compile(
        r"unauthori[sz]ed|unauthenticated|not authenticated|bad credentials|"
        r"invalid (api )?(key|token)|access denied|permission denied|forbidden",
        re.I,
    ),
    ErrorKind.TRANSIENT: re.compile(
        r"timed? ?out|temporar(il)?y|unavailable|try again|internal (server )?error", re.I
    ),
}
_PRIORITY = (ErrorKind.RATE_LIMITED, ErrorKind.AUTH, ErrorKind.TRANSIENT)
_CLASSES: Mapping[ErrorKind, type[ConnectorError]] = {
    ErrorKind.RATE_LIMITED: RateLimitedError,
    ErrorKind.AUTH: AuthError,
    ErrorKind.TRANSIENT: TransientError,
    ErrorKind.BAD_REQUEST: BadRequestError,
}
_RETRY_KEYS = ("retryAfter", "retry_after", "retryAfterSeconds", "retry-after")
MAX_MESSAGE = 200
"""Characters of a server message kept in an error (they can be long, and are logged)."""


def map_gql_error(exc: Exception, *, request: str | None) -> ConnectorError:
    """The typed error for an exception of gql's transport; anything else is a bug (the
    typed internal error, not retried by default)."""
    if isinstance(exc, ConnectorError):
        return exc
    error = _from_gql(exc, request) or internal_error(exc, "unexpected error from gql")
    error.__cause__ = exc
    return error


def _from_gql(exc: Exception, request: str | None) -> ConnectorError | None:
    if isinstance(exc, gqlx.TransportQueryError):
        # The server answered with GraphQL ``errors`` (usually in a 200): their codes and
        # messages say whether to wait, retry or give up, so they are read, not lumped.
        return error_from_graphql(exc.errors, request)
    if isinstance(exc, gqlx.TransportServerError):
        code = exc.code or 500
        return error_for_status(code, f"GraphQL server answered HTTP {code}", request=request)
    if isinstance(exc, gqlx.TransportProtocolError):
        # gql appends the whole body (an HTML error page, say): keep its start only.
        return MalformedResponseError(f"not a GraphQL response: {str(exc)[:200]}", request=request)
    if isinstance(exc, gqlx.TransportConnectionFailed) and exc.__cause__ is not None:
        # gql wraps httpx's exceptions; the cause tells a timeout from a refused connection.
        inner = map_httpx_error(exc.__cause__, request=request)
        if inner is not None:
            return inner
    if isinstance(exc, gqlx.TransportError):
        return TransientError(f"GraphQL transport error: {type(exc).__name__}", request=request)
    return None


def error_from_graphql(errors: Sequence[Any] | None, request: str | None) -> ConnectorError:
    """One typed error for a GraphQL ``errors`` list (never empty in practice)."""
    items = [e for e in errors or () if isinstance(e, Mapping)] or [{}]
    kinds = {_kind(e) for e in items}
    kind = next((k for k in _PRIORITY if k in kinds), ErrorKind.BAD_REQUEST)
    retry_after = _retry_after(items) if kind is ErrorKind.RATE_LIMITED else None
    return _CLASSES[kind](_message(items), request=request, retry_after=retry_after)


def _code(error: Mapping[str, Any]) -> str | None:
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    code = code if isinstance(code, str) else error.get("type")  # GitHub: top-level "type"
    return code.upper() if isinstance(code, str) else None


def _kind(error: Mapping[str, Any]) -> ErrorKind:
    code = _code(error)
    for kind in _PRIORITY:
        if code in _CODES[kind]:
            return kind
    message = str(error.get("message", ""))
    for kind in _PRIORITY:
        # A code we do not know is still the server's verdict: its message may reveal a
        # rate limit or an auth failure, but never make a coded error worth retrying.
        if _MESSAGES[kind].search(message) and (code is None or kind is not ErrorKind.TRANSIENT):
            return kind
    return ErrorKind.BAD_REQUEST


def _retry_after(errors: Sequence[Mapping[str, Any]]) -> float | None:
    for error in errors:
        extensions = error.get("extensions")
        if not isinstance(extensions, Mapping):
            continue
        for key in _RETRY_KEYS:
            value = extensions.get(key)
            if value is not None and (seconds := parse_retry_after(str(value))) is not None:
                return seconds
    return None


def _message(errors: Sequence[Mapping[str, Any]]) -> str:
    first = errors[0]
    text = str(first.get("message") or "no message")
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "..."
    code = _code(first)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"GraphQL error{f' {code}' if code else ''}: {text}{more}"


def scrub(error: ConnectorError, secrets: Sequence[str]) -> ConnectorError:
    """The same error with any secret in its message replaced by ``***``.

    A server may echo a token back ("invalid token abc..."); it must not reach logs.
    """
    message = error.message
    for secret in secrets:
        message = message.replace(secret, "***")
    if message == error.message:
        return error
    return type(error)(
        message,
        entity=error.entity,
        request=error.request,
        status=error.status,
        retry_after=error.retry_after,
    )
