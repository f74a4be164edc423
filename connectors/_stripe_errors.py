"""The Stripe SDK's exceptions, mapped to statesync's error kinds by the Stripe connector.

Imported by the connector only once it has the SDK (``statesync[stripe]``).
"""

from __future__ import annotations

import stripe

from statesync._internal import internal_error
from statesync._ratelimit import retry_after_from_headers
from statesync.connectors._http_errors import map_httpx_error
from statesync.errors import (
    AuthError,
    ConnectorError,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
    error_for_status,
)


def map_stripe_error(exc: Exception, *, request: str | None) -> ConnectorError:
    """The typed error for ``exc``, raised by the Stripe SDK. Anything that is neither a
    Stripe nor an httpx error is a bug: the typed internal error, not retried by default."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, stripe.StripeError):
        error = _from_stripe(exc, request)
    else:
        error = map_httpx_error(exc, request=request) or internal_error(
            exc, "unexpected error from the Stripe SDK"
        )
    error.__cause__ = exc
    return error


def _from_stripe(exc: stripe.StripeError, request: str | None) -> ConnectorError:
    status = exc.http_status
    retry_after = retry_after_from_headers(exc.headers or {})
    # Stripe's messages never contain the full key, but its str() can include
    # the request id; the user message is enough and safe to log.
    answered = f" (HTTP {status})" if status is not None else ""
    message = f"stripe {type(exc).__name__}{answered}: {exc.user_message or 'no message'}"
    if isinstance(exc, stripe.RateLimitError):
        return RateLimitedError(message, status=status, retry_after=retry_after, request=request)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return AuthError(message, status=status, request=request)
    if isinstance(exc, stripe.APIConnectionError):
        return TransientError(message, status=status, request=request)
    if status is not None and 200 <= status < 300:
        # The SDK raises APIError for a 2xx body it cannot parse.
        return MalformedResponseError(
            f"stripe answered HTTP {status} with a body that is not a list object",
            status=status,
            request=request,
        )
    if status is not None:
        return error_for_status(status, message, retry_after=retry_after, request=request)
    return TransientError(message, request=request)
