"""Retry and chunk policies: frozen values that decide, never sleep.

A :class:`RetryPolicy` answers "after this error on this attempt, wait how long, or give
up?"; the local runner or Inngest does the waiting. Per error kind, a :class:`KindOverride`
may change the attempts and delays or take the kind out of (or into) retrying.
"""

from __future__ import annotations

import functools
import math
import random
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
from attrs import field, frozen, validators

from statesync._frozen import FrozenDict
from statesync._ratelimit import ABSURD_WAIT
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


def _finite_positive(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        # Worded like attrs' own checks, which the policy-file loader explains.
        raise ValueError(f"'{attribute.name}' must be finite and > 0: {value!r}")


_SPREAD_FLOOR = 5.0
"""Seconds: a server's short wait is still spread over ``jitter`` of this much, so
entities told "1 s" by the same answer do not all come back in the same 100 ms."""


@frozen
class RetryDecision:
    """What a :class:`RetryPolicy` decided about one failure.

    ``delay`` is the wait before the next attempt, ``None`` to give up. ``waiting`` is
    true when the wait is the server's (a rate limit with a ``Retry-After`` or a reset
    time): the entity is waiting, not failing. ``reason`` says why it gave up.
    """

    delay: float | None
    waiting: bool = False
    reason: str | None = None


@frozen
class KindOverride:
    """What changes for one :class:`~statesync.errors.ErrorKind`; ``None`` keeps the base.

    ``retry=False`` never retries the kind, ``retry=True`` retries it even when
    ``retry_on`` leaves it out. ``attempts`` caps the attempt number (which counts every
    failure since the entity's last page landed, whatever its kind) at which this kind
    gives up.
    """

    attempts: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    initial_delay: float | None = field(default=None, validator=validators.optional(_non_negative))
    multiplier: float | None = field(
        default=None, validator=validators.optional(validators.ge(1.0))
    )
    max_delay: float | None = field(default=None, validator=validators.optional(_non_negative))
    jitter: float | None = field(default=None, validator=validators.optional(_fraction))
    give_up_after: float | None = field(default=None, validator=_finite_positive)
    max_wait: float | None = field(default=None, validator=_finite_positive)
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
    return FrozenDict({ErrorKind(k): v for k, v in value.items()})


@frozen
class RetryPolicy:
    """How a failing chunk is retried.

    ``attempts`` bounds consecutive failures *without progress*, the first try included
    (1 means never retry): every page that lands resets the count, so a long chunk that
    keeps landing pages between errors never runs out. Delays grow as ``initial_delay *
    multiplier ** (attempt - 1)``, capped at ``max_delay``, with up to ``jitter`` (a
    fraction) added at random so workers do not retry in lock-step.

    A rate limit whose server said how long to wait (``Retry-After``, a quota's reset
    time) is bounded by time instead: it is waited out, whatever the attempt count, for
    up to ``give_up_after`` seconds without progress (hours by default: hourly quotas
    must recover). The server's wait is never shortened and is spread above it by
    ``jitter`` (of at least 5 s), so entities sharing an account do not come back
    together. A wait beyond ``max_wait`` is not slept: the entity fails with an error
    saying what the server asked and when it may be resumed (``resume --retry-failed``).
    The server's wait wins over the computed delay when ``respect_retry_after``.
    ``kinds`` changes any of that per error kind (see :class:`KindOverride`).
    """

    attempts: int = field(default=5, validator=validators.ge(1))
    initial_delay: float = field(default=1.0, validator=_non_negative)
    multiplier: float = field(default=2.0, validator=validators.ge(1.0))
    max_delay: float = field(default=60.0, validator=_non_negative)
    jitter: float = field(default=0.1, validator=_fraction)
    retry_on: frozenset[ErrorKind] = field(default=_RETRYABLE_BY_DEFAULT, converter=_kinds)
    respect_retry_after: bool = True
    give_up_after: float = field(default=6 * 3600.0, validator=_finite_positive)
    """Seconds without progress after which a server-timed rate limit is given up."""
    max_wait: float = field(default=2 * 3600.0, validator=_finite_positive)
    """The longest server-asked wait that is slept; a longer one fails the entity."""
    kinds: Mapping[ErrorKind, KindOverride] = field(factory=dict, converter=_kind_overrides)

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
        elapsed: float = 0.0,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        ``attempt`` is the 1-based number of the attempt that just failed, counted since
        the last progress; ``elapsed`` the seconds since the first of those failures.
        The error's kind override, if any, applies. :meth:`decide` says more.
        """
        return self.decide(attempt, error, rand=rand, elapsed=elapsed).delay

    def decide(
        self,
        attempt: int,
        error: ConnectorError,
        *,
        rand: Callable[[], float] = random.random,
        elapsed: float = 0.0,
    ) -> RetryDecision:
        """:meth:`next_delay`, with whether the wait is the server's and why it gave up."""
        policy = self.for_kind(error.kind)
        if error.kind not in policy.retry_on:
            return RetryDecision(None, reason=f"{error.kind.value} errors are not retried")
        hint = _server_wait(error) if policy.respect_retry_after else None
        if hint is not None and error.kind is ErrorKind.RATE_LIMITED:
            return policy._wait_out(hint, elapsed, rand)
        if attempt >= policy.attempts:
            return RetryDecision(None, reason=f"gave up after {attempt} attempts without progress")
        if hint is not None:
            return RetryDecision(hint + policy.jitter * max(hint, _SPREAD_FLOOR) * rand())
        base = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (attempt - 1))
        return RetryDecision(min(policy.max_delay, base * (1.0 + policy.jitter * rand())))

    def _wait_out(self, hint: float, elapsed: float, rand: Callable[[], float]) -> RetryDecision:
        if hint > self.max_wait:
            return RetryDecision(
                None,
                reason=f"the server asked to wait {hint:.0f}s, more than max_wait "
                f"({self.max_wait:.0f}s)",
            )
        if elapsed + hint > self.give_up_after:
            return RetryDecision(
                None,
                reason=f"rate limited for {elapsed:.0f}s without progress "
                f"(give_up_after is {self.give_up_after:.0f}s)",
            )
        return RetryDecision(hint + self.jitter * max(hint, _SPREAD_FLOOR) * rand(), waiting=True)


def _server_wait(error: ConnectorError) -> float | None:
    """The error's server-given wait, when it is one worth believing."""
    wait = error.retry_after
    if wait is None or not math.isfinite(wait) or wait <= 0 or wait > ABSURD_WAIT:
        return None
    return wait


@frozen(init=False)
class ChunkPolicy:
    """How much work one chunk does: the seed's ``maxIterations`` and page size.

    Throughput settings (all off by default, which keeps one page in flight at a time
    with the next one prefetched while it is written):

    ``pages_in_flight``
        API requests in flight at once for one entity (``concurrency`` before; that
        name is a deprecated alias for one release): planned offsets for connectors
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
    pages_in_flight: int = field(default=1, validator=validators.ge(1))
    target_duration: float | None = field(
        default=None, validator=validators.optional(validators.gt(0.0))
    )
    min_iterations: int = field(default=1, validator=validators.ge(1))
    rate_limit: float | None = field(
        default=None, validator=validators.optional(validators.gt(0.0))
    )
    rate_burst: int | None = field(default=None, validator=validators.optional(validators.ge(1)))

    def __init__(
        self,
        max_iterations: int = 10,
        page_size: int = 100,
        lease_ttl: float = 15.0,
        pages_in_flight: int = 1,
        target_duration: float | None = None,
        min_iterations: int = 1,
        rate_limit: float | None = None,
        rate_burst: int | None = None,
        *,
        concurrency: int | None = None,
    ) -> None:
        if concurrency is not None:
            warnings.warn(
                "ChunkPolicy(concurrency=...) is deprecated: use pages_in_flight",
                DeprecationWarning,
                stacklevel=2,
            )
            pages_in_flight = concurrency
        self.__attrs_init__(
            max_iterations,
            page_size,
            lease_ttl,
            pages_in_flight,
            target_duration,
            min_iterations,
            rate_limit,
            rate_burst,
        )

    @property
    def concurrency(self) -> int:
        """Deprecated (one release): :attr:`pages_in_flight`."""
        warnings.warn(
            "ChunkPolicy.concurrency is deprecated: use pages_in_flight",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.pages_in_flight

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


def _retry_table(value: Mapping[str, RetryPolicy]) -> Mapping[str, RetryPolicy]:
    return FrozenDict(value)


def _chunk_table(value: Mapping[str, ChunkPolicy]) -> Mapping[str, ChunkPolicy]:
    return FrozenDict(value)


@frozen
class PolicySet:
    """Retry and chunk policies resolved per connector and entity.

    Lookup order, most specific first: ``(connector, entity)``, ``connector``, default.
    Loading from TOML, dicts and the environment lives in :mod:`statesync._policy_config`.
    """

    retry: RetryPolicy = RetryPolicy()
    chunk: ChunkPolicy = ChunkPolicy()
    retry_overrides: Mapping[str, RetryPolicy] = field(factory=dict, converter=_retry_table)
    """Keys are ``"connector"`` or ``"connector.entity"``."""
    chunk_overrides: Mapping[str, ChunkPolicy] = field(factory=dict, converter=_chunk_table)

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
