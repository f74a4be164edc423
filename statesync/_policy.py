"""Retry and chunk policies: frozen values that decide, never sleep.

A :class:`RetryPolicy` answers "after this error on this attempt, wait how long, or give
up?"; the local runner or Inngest does the waiting.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TypeVar

from attrs import field, frozen, validators

from statesync.errors import ConnectorError, ErrorKind

_RETRYABLE_BY_DEFAULT = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.TRANSIENT,
        ErrorKind.TIMEOUT,
        ErrorKind.MALFORMED_RESPONSE,
    }
)


def _kinds(value: object) -> frozenset[ErrorKind]:
    if not isinstance(value, set | frozenset | list | tuple):
        raise TypeError(f"retry_on must be a collection of error kinds, got {value!r}")
    return frozenset(ErrorKind(v) for v in value)


_non_negative = validators.ge(0.0)


@frozen
class RetryPolicy:
    """How a failing chunk is retried.

    ``attempts`` counts every try, the first included: 1 means never retry. Delays grow
    as ``initial_delay * multiplier ** (attempt - 1)``, capped at ``max_delay``, with up
    to ``jitter`` (a fraction) added at random so workers do not retry in lock-step. A
    server's ``Retry-After`` wins over the computed delay when ``respect_retry_after``.
    """

    attempts: int = field(default=5, validator=validators.ge(1))
    initial_delay: float = field(default=1.0, validator=_non_negative)
    multiplier: float = field(default=2.0, validator=validators.ge(1.0))
    max_delay: float = field(default=60.0, validator=_non_negative)
    jitter: float = field(default=0.1, validator=[_non_negative, validators.le(1.0)])
    retry_on: frozenset[ErrorKind] = field(default=_RETRYABLE_BY_DEFAULT, converter=_kinds)
    respect_retry_after: bool = True

    def retries(self, error: ConnectorError) -> bool:
        return error.kind in self.retry_on

    def next_delay(
        self,
        attempt: int,
        error: ConnectorError,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        ``attempt`` is the 1-based number of the attempt that just failed.
        """
        if not self.retries(error) or attempt >= self.attempts:
            return None
        if self.respect_retry_after and error.retry_after is not None:
            return error.retry_after
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return min(self.max_delay, base * (1.0 + self.jitter * rand()))


@frozen
class ChunkPolicy:
    """How much work one chunk does: the seed's ``maxIterations`` and page size."""

    max_iterations: int = field(default=10, validator=validators.ge(1))
    page_size: int = field(default=100, validator=validators.ge(1))
    lease_ttl: float = field(default=60.0, validator=validators.gt(0.0))


@frozen
class PolicySet:
    """Retry and chunk policies resolved per connector and entity.

    Lookup order, most specific first: ``(connector, entity)``, ``connector``, default.
    Loading from TOML, dicts and the environment lives in :mod:`statesync._policy_config`.
    """

    retry: RetryPolicy = RetryPolicy()
    chunk: ChunkPolicy = ChunkPolicy()
    retry_overrides: Mapping[str, RetryPolicy] = field(factory=dict)
    """Keys are ``"connector"`` or ``"connector.entity"``."""
    chunk_overrides: Mapping[str, ChunkPolicy] = field(factory=dict)

    def retry_for(self, connector: str, entity: str) -> RetryPolicy:
        return _lookup(self.retry_overrides, connector, entity, self.retry)

    def chunk_for(self, connector: str, entity: str) -> ChunkPolicy:
        return _lookup(self.chunk_overrides, connector, entity, self.chunk)


_P = TypeVar("_P")


def _lookup(table: Mapping[str, _P], connector: str, entity: str, default: _P) -> _P:
    found = table.get(f"{connector}.{entity}")
    if found is None:
        found = table.get(connector)
    return default if found is None else found
