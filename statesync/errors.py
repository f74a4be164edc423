"""The one exception tree of statesync.

Every error a user can meet derives from :class:`StatesyncError`. Connector errors carry an
:class:`ErrorKind`, which is what retry policies key on. This module knows no library's
exceptions: each edge maps its own (the HTTP connectors httpx's in
``statesync.connectors._http_errors``, the Stripe connector the SDK's, the GraphQL
connector gql's and GraphQL ``errors``, the stores redis-py's and sqlite3's, the
destinations psycopg's and sqlite3's), and anything an edge does not know becomes an
:class:`InternalError`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any


class ErrorKind(enum.StrEnum):
    """What went wrong with an API call, as far as retrying is concerned."""

    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    MALFORMED_RESPONSE = "malformed_response"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    INTERNAL = "internal"
    """A bug inside a connector (an unexpected exception): not retried by default."""
    NO_PROGRESS = "no_progress"


class StatesyncError(Exception):
    """Base class of every error raised by statesync."""


class ConfigurationError(StatesyncError):
    """A setting, argument or configuration file is invalid."""


class MissingExtraError(ConfigurationError, ImportError):
    """An optional backend was asked for but its extra is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the {module!r} package: install it with "
            f"`pip install 'statesync[{extra}]'`"
        )
        self.extra = extra


class InvalidTransitionError(StatesyncError):
    """A trigger was fired from a state that has no such transition."""

    def __init__(self, entity: str, state: str, trigger: str) -> None:
        super().__init__(
            f"entity {entity!r} is in state {state!r}, which has no transition {trigger!r}"
        )
        self.entity = entity
        self.state = state
        self.trigger = trigger


class StoreError(StatesyncError):
    """The state store could not be read or written."""


class ConflictError(StoreError):
    """A write was based on a stale version of the entity record."""

    def __init__(self, job_id: str, entity: str, expected: int, actual: int | None) -> None:
        super().__init__(
            f"stale write to job {job_id!r} entity {entity!r}: expected version {expected}, "
            f"store has {actual}"
        )
        self.expected = expected
        self.actual = actual


class LeaseError(StoreError):
    """Another worker drives this entity, or our lease on it has expired."""


class StaleFenceError(LeaseError):
    """A destination refused a write whose lease token is older than one it has seen."""

    def __init__(self, entity: str, token: int) -> None:
        super().__init__(
            f"a newer worker drives entity {entity!r}: this writer's lease (token {token}) "
            "is stale, so its write was refused"
        )
        self.entity = entity
        self.token = token


class UnknownJobError(StoreError):
    """No job (or entity of a job) with that id is in the store."""


class JobBusyError(StatesyncError):
    """A job (or entity) is being driven by another live worker right now.

    ``holders`` maps each busy entity to its lease's owner and expiry (Unix seconds).
    """

    def __init__(self, job_id: str, holders: Mapping[str, tuple[str, float]]) -> None:
        named = ", ".join(f"{e!r} by {owner}" for e, (owner, _) in holders.items())
        super().__init__(f"job {job_id!r} is running: {named or 'held by another worker'}")
        self.job_id = job_id
        self.holders = dict(holders)


class UnknownEntityError(ConfigurationError):
    """An entity name that the job (or connector) does not have."""

    def __init__(self, job_id: str, entities: Sequence[str], known: Sequence[str]) -> None:
        super().__init__(
            f"job {job_id!r} has no entity {', '.join(map(repr, entities))}; "
            f"it has: {', '.join(known)}"
        )
        self.entities = tuple(entities)


class DestinationError(StatesyncError):
    """The destination could not be written."""


class DatabaseLockedError(StatesyncError):
    """A SQLite file's write lock stayed taken for as long as this worker could wait.

    The wait is bounded by the worker's lease (waiting longer could not help: the lease
    would lapse), so a frozen lock holder cannot stall its successor for a fixed 30 s.
    Retryable: the holder may let go. ``holder_pid`` names the process holding the lock
    when the operating system tells (same host).
    """

    retryable = True

    def __init__(self, what: str, waited: float, holder_pid: int | None, holder: str) -> None:
        who = f"process {holder_pid}{holder}" if holder_pid is not None else "another process"
        super().__init__(
            f"{what}: the write lock is held by {who}; gave up after waiting {waited:.1f}s "
            "(the time left on this worker's lease)"
        )
        self.waited = waited
        self.holder_pid = holder_pid


class StoreLockedError(DatabaseLockedError, StoreError):
    """The SQLite state store's file stayed locked (see :class:`DatabaseLockedError`)."""


class DestinationLockedError(DatabaseLockedError, DestinationError):
    """The SQLite destination's file stayed locked (see :class:`DatabaseLockedError`)."""


class ConnectorError(StatesyncError):
    """An API call failed. ``kind`` says how, and so whether to retry."""

    kind: ErrorKind = ErrorKind.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        entity: str | None = None,
        request: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        where = " ".join(p for p in (f"entity {entity!r}" if entity else "", request or "") if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.message = message
        self.entity = entity
        self.request = request
        self.status = status
        self.retry_after = retry_after

    def with_context(self, entity: str, request: str | None) -> ConnectorError:
        """The same error, naming the entity and request it happened on."""
        if self.entity is not None:
            return self
        new = type(self)(
            self.message,
            entity=entity,
            request=request or self.request,
            status=self.status,
            retry_after=self.retry_after,
        )
        new.__cause__ = self.__cause__ or self
        return new


class RateLimitedError(ConnectorError):
    kind = ErrorKind.RATE_LIMITED


class TransientError(ConnectorError):
    kind = ErrorKind.TRANSIENT


class APITimeoutError(TransientError):
    kind = ErrorKind.TIMEOUT


class AuthError(ConnectorError):
    kind = ErrorKind.AUTH


class BadRequestError(ConnectorError):
    kind = ErrorKind.BAD_REQUEST


class MalformedResponseError(ConnectorError):
    kind = ErrorKind.MALFORMED_RESPONSE


class InternalError(ConnectorError):
    """An unexpected exception inside a connector, with where it was raised.

    ``exception`` is the exception's type name and ``frame`` the last frame of its
    traceback (``file:line in function``); both are also in the message.
    """

    kind = ErrorKind.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        exception: str | None = None,
        frame: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.exception = exception
        self.frame = frame

    def with_context(self, entity: str, request: str | None) -> ConnectorError:
        if self.entity is not None:
            return self
        new = InternalError(
            self.message,
            exception=self.exception,
            frame=self.frame,
            entity=entity,
            request=request or self.request,
        )
        new.__cause__ = self.__cause__ or self
        return new


class NoProgressError(ConnectorError):
    """A walk stopped moving: a page repeated the previous position, or its records fell
    outside the bounds the request sent (the server ignored a filter).

    Not retried by default: sending the same request again would get the same answer,
    so the entity fails with this error (naming the request and its filter) instead of
    looping.
    """

    kind = ErrorKind.NO_PROGRESS


_BY_KIND: Mapping[ErrorKind, type[ConnectorError]] = {
    cls.kind: cls
    for cls in (
        RateLimitedError,
        TransientError,
        APITimeoutError,
        AuthError,
        BadRequestError,
        MalformedResponseError,
        InternalError,
        NoProgressError,
    )
}


def error_for_kind(kind: ErrorKind) -> type[ConnectorError]:
    return _BY_KIND[kind]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    ``0``, negative, non-finite and absurd delays, a date in the past and garbage all
    mean "no hint" (see :mod:`statesync._ratelimit`, which does the parsing).
    """
    from statesync._ratelimit import parse_retry_after as parse

    return parse(value, now=now)


def error_for_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    request: str | None = None,
) -> ConnectorError:
    """Classify an HTTP error answer the way every connector should."""
    cls: type[ConnectorError]
    if status == 429:
        cls = RateLimitedError
    elif status in (401, 403):
        cls = AuthError
    elif status == 408 or status >= 500:
        cls = TransientError
    else:
        cls = BadRequestError
    return cls(message, status=status, retry_after=retry_after, request=request)
