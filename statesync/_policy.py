"""Retry and chunk policies: frozen values that decide, never sleep.

A :class:`RetryPolicy` answers "after this error on this attempt, wait how long, or give
up?"; the local runner or Inngest does the waiting. Per error kind, a :class:`KindOverride`
may change the attempts and delays or take the kind out of (or into) retrying.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
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
_fraction = [_non_negative, validators.le(1.0)]


@frozen
class KindOverride:
    """What changes for one :class:`~statesync.errors.ErrorKind`; ``None`` keeps the base.

    ``retry=False`` never retries the kind, ``retry=True`` retries it even when
    ``retry_on`` leaves it out. ``attempts`` caps the chunk's attempt number (which counts
    every failure of the chunk, whatever its kind) at which this kind gives up.
    """

    attempts: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    initial_delay: float | None = field(default=None, validator=validators.optional(_non_negative))
    multiplier: float | None = field(
        default=None, validator=validators.optional(validators.ge(1.0))
    )
    max_delay: float | None = field(default=None, validator=validators.optional(_non_negative))
    jitter: float | None = field(default=None, validator=validators.optional(_fraction))
    retry: bool | None = None

    def apply_to(self, base: RetryPolicy, kind: ErrorKind) -> RetryPolicy:
        """``base`` as it stands for ``kind``: a plain policy, without per-kind overrides."""
        changes = {
            a.name: value
            for a in attrs.fields(KindOverride)
            if a.name != "retry" and (value := getattr(self, a.name)) is not None
        }
        retry_on = base.retry_on
        if self.retry is not None:
            retry_on = retry_on | {kind} if self.retry else retry_on - {kind}
        return attrs.evolve(base, kinds={}, retry_on=retry_on, **changes)


def _kind_overrides(
    value: Mapping[ErrorKind, KindOverride] | Mapping[str, KindOverride],
) -> Mapping[ErrorKind, KindOverride]:
    return {ErrorKind(k): v for k, v in value.items()}


@frozen
class RetryPolicy:
    """How a failing chunk is retried.

    ``attempts`` counts every try, the first included: 1 means never retry. Delays grow
    as ``initial_delay * multiplier ** (attempt - 1)``, capped at ``max_delay``, with up
    to ``jitter`` (a fraction) added at random so workers do not retry in lock-step. A
    server's ``Retry-After`` wins over the computed delay when ``respect_retry_after``.
    ``kinds`` changes any of that per error kind (see :class:`KindOverride`).
    """

    attempts: int = field(default=5, validator=validators.ge(1))
    initial_delay: float = field(default=1.0, validator=_non_negative)
    multiplier: float = field(default=2.0, validator=validators.ge(1.0))
    max_delay: float = field(default=60.0, validator=_non_negative)
    jitter: float = field(default=0.1, validator=_fraction)
    retry_on: frozenset[ErrorKind] = field(default=_RETRYABLE_BY_DEFAULT, converter=_kinds)
    respect_retry_after: bool = True
    # Left out of the hash (a dict is not hashable) but not out of equality.
    kinds: Mapping[ErrorKind, KindOverride] = field(
        factory=dict, converter=_kind_overrides, hash=False
    )

    def for_kind(self, kind: ErrorKind) -> RetryPolicy:
        """This policy as it applies to errors of ``kind`` (itself when nothing changes)."""
        override = self.kinds.get(kind)
        return self if override is None else override.apply_to(self, kind)

    def retries(self, error: ConnectorError) -> bool:
        return error.kind in self.for_kind(error.kind).retry_on

    def next_delay(
        self,
        attempt: int,
        error: ConnectorError,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        ``attempt`` is the 1-based number of the attempt that just failed. The error's
        kind override, if any, applies.
        """
        policy = self.for_kind(error.kind)
        if error.kind not in policy.retry_on or attempt >= policy.attempts:
            return None
        if policy.respect_retry_after and error.retry_after is not None:
            return error.retry_after
        base = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (attempt - 1))
        return min(policy.max_delay, base * (1.0 + policy.jitter * rand()))


@frozen
class ChunkPolicy:
    """How much work one chunk does: the seed's ``maxIterations`` and page size.

    Throughput settings (all off by default, which keeps one page in flight at a time
    with the next one prefetched while it is written):

    ``concurrency``
        API requests in flight at once for one entity: planned offsets for connectors
        whose offsets are predictable, concurrent time windows for connectors that offer
        creation-time partitions. Pages are still written and checkpointed in order.
    ``target_duration``
        Seconds a chunk should take (a fraction of the host's step timeout, see
        :meth:`for_timeout`). The engine sizes each chunk from the measured time per
        API call, between ``min_iterations`` and ``max_iterations``, and stops
        launching requests once the target is reached.
    ``rate_limit``, ``rate_burst``
        The provider's limit in requests per second for the connector's account, and
        the burst it tolerates. Every request of every entity and window of that
        account, in this process (or, with a Redis budget, in every process), is paced
        through one shared budget below it.
    """

    max_iterations: int = field(default=10, validator=validators.ge(1))
    page_size: int = field(default=100, validator=validators.ge(1))
    lease_ttl: float = field(default=15.0, validator=validators.gt(0.0))
    """Seconds a lease lives without renewal; workers renew it every third of that."""
    concurrency: int = field(default=1, validator=validators.ge(1))
    target_duration: float | None = field(
        default=None, validator=validators.optional(validators.gt(0.0))
    )
    min_iterations: int = field(default=1, validator=validators.ge(1))
    rate_limit: float | None = field(
        default=None, validator=validators.optional(validators.gt(0.0))
    )
    rate_burst: int | None = field(default=None, validator=validators.optional(validators.ge(1)))

    def __attrs_post_init__(self) -> None:
        if self.min_iterations > self.max_iterations:
            raise ValueError(
                f"min_iterations ({self.min_iterations}) exceeds "
                f"max_iterations ({self.max_iterations})"
            )

    @classmethod
    def for_timeout(
        cls, host_timeout: float, *, fraction: float = 0.5, max_iterations: int = 10_000, **kw: Any
    ) -> ChunkPolicy:
        """A policy whose chunks aim at ``fraction`` of a host's step timeout."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be within (0, 1], got {fraction}")
        return cls(max_iterations=max_iterations, target_duration=host_timeout * fraction, **kw)

    def iterations(self, seconds_per_call: float | None) -> int:
        """API calls for the next chunk, given the measured seconds per call.

        Without a target (or a measurement yet) it is ``max_iterations``; with both, the
        calls that fill the target, with a quarter of headroom (the time limit ends the
        chunk when the calls come slower than measured), within the bounds.
        """
        if self.target_duration is None or not seconds_per_call:
            return self.max_iterations
        wanted = math.ceil(1.25 * self.target_duration / seconds_per_call)
        return max(self.min_iterations, min(self.max_iterations, wanted))


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

    def retry_for(self, connector: str, entity: str | None = None) -> RetryPolicy:
        """The entity's policy; without ``entity``, the connector's own level."""
        return _lookup(self.retry_overrides, connector, entity, self.retry)

    def chunk_for(self, connector: str, entity: str | None = None) -> ChunkPolicy:
        """The entity's chunk policy; without ``entity``, the connector's own level."""
        return _lookup(self.chunk_overrides, connector, entity, self.chunk)

    def retry_resolver(self, connector: str) -> Callable[[str], RetryPolicy]:
        """Entity name to retry policy for ``connector``: what a runner's ``retry_policy`` takes."""
        return functools.partial(self.retry_for, connector)


_P = TypeVar("_P")


def _lookup(table: Mapping[str, _P], connector: str, entity: str | None, default: _P) -> _P:
    found = None if entity is None else table.get(f"{connector}.{entity}")
    if found is None:
        found = table.get(connector)
    return default if found is None else found
