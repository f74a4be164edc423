"""httpx's exceptions, mapped to statesync's error kinds at the edge that uses httpx.

The Close, REST and GraphQL connectors send their requests with httpx; they call
:func:`map_httpx_error` in their ``except httpx.HTTPError`` and raise what it returns,
so the core never needs to know httpx's exception classes.
"""

from __future__ import annotations

import httpx

from statesync._internal import internal_error
from statesync._ratelimit import retry_after_from_headers
from statesync.errors import (
    APITimeoutError,
    BadRequestError,
    ConnectorError,
    MalformedResponseError,
    TransientError,
    error_for_status,
)


def map_httpx_error(exc: BaseException, *, request: str | None = None) -> ConnectorError | None:
    """The typed error for one of httpx's exceptions; ``None`` when ``exc`` is not one."""
    error: ConnectorError
    if isinstance(exc, httpx.TimeoutException):
        error = APITimeoutError(f"request timed out: {type(exc).__name__}", request=request)
    elif isinstance(exc, httpx.TransportError):
        error = TransientError(f"network error: {type(exc).__name__}", request=request)
    elif isinstance(exc, httpx.DecodingError):
        # The body could not be decoded (a broken gzip stream, a bad charset).
        error = MalformedResponseError(f"undecodable body: {type(exc).__name__}", request=request)
    elif isinstance(exc, httpx.TooManyRedirects):
        error = BadRequestError("too many redirects", request=request)
    elif isinstance(exc, httpx.HTTPStatusError):
        resp = exc.response
        error = error_for_status(
            resp.status_code,
            f"HTTP {resp.status_code}",
            retry_after=retry_after_from_headers(resp.headers),
            request=request,
        )
    else:
        return None
    error.__cause__ = exc
    return error


def map_http_error(exc: Exception, *, request: str | None = None) -> ConnectorError:
    """:func:`map_httpx_error`, with anything else (a bug, or httpx's ``InvalidURL``) as
    the typed internal error, which is not retried by default."""
    if isinstance(exc, ConnectorError):
        return exc
    mapped = map_httpx_error(exc, request=request)
    return mapped if mapped is not None else internal_error(exc, "unexpected HTTP client error")
