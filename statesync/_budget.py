"""One request budget per API account, shared by every entity and window that uses it.

The engine calls :meth:`RateBudget.acquire` before each request (the budget waits: it is
one of the few places that may) and reports back what the provider said: a 429
(:meth:`RateBudget.throttled`) or a ``remaining``/``reset`` report
(:meth:`RateBudget.observe`). Budgets are found by ``connector.account`` in a
:class:`BudgetRegistry` that the runner or adapter is given (an instance, never a
global): a plain registry holds in-memory budgets for one process; ``RedisBudgets``
(:mod:`statesync.stores._redis_budget`, next to the other Redis code) shares one budget
between processes and Inngest steps.

Pacing is GCRA (a virtual-time token bucket): requests are spread ``1 / pace`` apart
and at most ``burst`` may start at once after an idle spell. Of the provider's burst the
budget uses half, keeping the rest for requests that arrive early or late.

With a configured limit the pace aims at ``headroom`` (95 %) of it, drops by half on a
429 (and pauses for its ``Retry-After``), and climbs back by a tenth of the limit per
second: the limit stays a ceiling. Without one (the default) the budget learns the
provider's limit by AIMD, the shape TCP uses: it sends at full speed until the first
429 or a report that nothing remains, then cuts the pace to half the rate it was
sending at (to 80 % once the pace has held a few seconds), and adds 2 % of that rate
(at least half a request) per second of successful requests (a share per success), so
it probes upwards slowly and cuts again when it finds the limit. Cuts come at most once
per calm spell (the pause plus a second), so the 429s of one burst count once. A
``remaining``/``reset`` report caps the pace at what remains until the reset, with or
without a configured limit.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from attrs import frozen

from statesync._models import RateInfo

if TYPE_CHECKING:
    from statesync._policy import ChunkPolicy
    from statesync.connector import BaseConnector

__all__ = [
    "BudgetRegistry",
    "MemoryRateBudget",
    "RateBudget",
    "RateSettings",
]

_RECOVERY = 0.1
"""Share of the configured limit per second by which the pace climbs back after a cut."""
_FLOOR = 0.1
"""The pace never drops below this share of the configured limit."""
_DECREASE = 0.8
"""A learned pace is cut to this share of the rate the 429 met..."""
_STEEP = 0.5
"""...or to this share on the first cut, and on one within ``_RECENT`` seconds of the last."""
_RECENT = 4.0
_INCREASE = 0.02
"""Share of the rate at the last cut that a learned pace gains per second of successes."""
_MIN_PACE = 0.5
"""Requests per second a learned pace never drops below."""
_MIN_STEP = 0.5
"""Requests per second a learned pace gains per second at least, so a cut made while
little was sent (another client spent the quota) does not take minutes to undo."""
_FIRST_WINDOW = 0.2
"""Seconds the first requests' rate is measured over at least (a burst is not a rate)."""
_CALM = 1.0
"""Seconds after a pause ends in which further 429s (of requests sent before) cut nothing."""


@frozen
class RateSettings:
    """A provider's limit for one account: requests per second and tolerated burst.

    ``rate=None`` is an unknown limit: the budget learns it (see the module docs).
    """

    rate: float | None
    burst: int = 1
    headroom: float = 0.95

    @property
    def target(self) -> float | None:
        return None if self.rate is None else self.rate * self.headroom

    @property
    def own_burst(self) -> int:
        """The burst the budget lets through itself: half the provider's, so requests
        that reach it a little early or late (network, scheduling) still fit."""
        return max(1, self.burst // 2)


@runtime_checkable
class RateBudget(Protocol):
    """Paces the requests of one API account."""

    async def acquire(self) -> None:
        """Wait until one more request may be sent, and count it."""

    async def throttled(self, retry_after: float | None) -> None:
        """The provider answered 429: slow down, and pause ``retry_after`` seconds."""

    async def observe(self, info: RateInfo) -> None:
        """A request succeeded; ``info`` is what the provider reported with it (maybe
        nothing: ``RateInfo()``)."""


def _usable(seconds: float | None, default: float) -> float:
    """A pause length: finite, within a day; anything else is ``default``."""
    if seconds is None or not math.isfinite(seconds) or seconds <= 0 or seconds > 86400:
        return default
    return seconds


class MemoryRateBudget:
    """A budget shared by the tasks of one process (any event loop)."""

    def __init__(
        self,
        settings: RateSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._pace = settings.target or 0.0
        """Requests per second let through; 0 is unpaced (a limit not met yet)."""
        self._updated = now
        self._tat = now
        self._paused_until = 0.0
        self._cap = 0.0
        self._cap_until = 0.0
        self._calm_until = 0.0
        self._last_cut = -math.inf
        self._step = 0.0
        self._window = (now, 0)
        self._sent = 0.0
        self.requests = 0
        self.throttles = 0

    @property
    def pace(self) -> float | None:
        """Requests per second the budget currently lets through; ``None``: unpaced."""
        return self._pace or None

    def _sending(self, now: float) -> float:
        """Requests per second sent lately: the last full second and the current one."""
        start, count = self._window
        elapsed = now - start
        if elapsed >= 1.0:
            return self._sent
        if not self._sent:
            return count / max(elapsed, _FIRST_WINDOW)  # no full second measured yet
        return count + self._sent * (1.0 - elapsed)

    def _count(self, now: float) -> None:
        start, count = self._window
        if now - start >= 1.0:
            self._sent = count / (now - start)
            start, count = now, 0
        self._window = (start, count + 1)

    def _reserve(self) -> float:
        with self._lock:
            now = self._clock()
            target = self.settings.target
            if target is not None:
                self._pace = min(target, self._pace + (now - self._updated) * target * _RECOVERY)
            self._updated = now
            self._count(now)
            self.requests += 1
            pace = self._pace or math.inf
            if now < self._cap_until:
                pace = min(pace, self._cap)
            interval = 0.0 if math.isinf(pace) else 1.0 / pace
            tolerance = (self.settings.own_burst - 1) * interval
            start = max(now, self._tat - tolerance, self._paused_until)
            self._tat = max(self._tat, start) + interval
            return start - now

    async def acquire(self) -> None:
        wait = self._reserve()
        if wait > 0:
            await self._sleep(wait)

    def _cut(self, now: float, pause: float) -> None:
        """Multiplicative decrease, once per calm spell (this pause and a second after)."""
        if now < self._calm_until:
            return
        self._calm_until = now + pause + _CALM
        target = self.settings.target
        if target is not None:
            self._pace = max(target * _FLOOR, self._pace * 0.5)
            return
        sending = self._sending(now)
        base = min(self._pace, sending) if self._pace and sending else self._pace or sending
        # The first cut, or one soon after the last, did not go far enough: halve.
        steep = not self._pace or now - self._last_cut < _RECENT
        share = _STEEP if steep else _DECREASE
        self._pace = max(_MIN_PACE, base * share)
        self._step = max(_MIN_STEP, base * _INCREASE)
        self._last_cut = now

    def _pause(self, now: float, seconds: float) -> None:
        self._paused_until = max(self._paused_until, now + seconds)
        self._tat = max(self._tat, self._paused_until)

    async def throttled(self, retry_after: float | None) -> None:
        with self._lock:
            now = self._clock()
            self.throttles += 1
            pause = _usable(retry_after, 1.0)
            self._cut(now, pause)
            self._updated = now
            self._pause(now, pause)

    async def observe(self, info: RateInfo) -> None:
        with self._lock:
            now = self._clock()
            if self.settings.target is None and self._pace:
                # Additive increase: a share per success, so a second of them adds _step.
                self._pace += self._step / self._pace
            if info.remaining is None or not info.reset:
                return
            reset = _usable(info.reset, 1.0)
            if info.remaining <= 0:
                self._cut(now, reset)
                self._pause(now, reset)
                return
            # What is left must last until the reset: cap the pace until then.
            allowed = info.remaining / reset
            if not self._pace or allowed < self._pace:
                self._cap, self._cap_until = max(allowed, 0.5), now + reset


BudgetFactory = Callable[[str, RateSettings], RateBudget]


class BudgetRegistry:
    """Budgets by account: the same account always gets the same budget (while its
    settings stay the same)."""

    def __init__(self, factory: BudgetFactory | None = None) -> None:
        self._factory: BudgetFactory = factory or (lambda _a, s: MemoryRateBudget(s))
        self._lock = threading.Lock()
        self._budgets: dict[str, tuple[RateSettings, RateBudget]] = {}

    def get(self, account: str, settings: RateSettings) -> RateBudget:
        with self._lock:
            found = self._budgets.get(account)
            if found is None or found[0] != settings:
                found = (settings, self._factory(account, settings))
                self._budgets[account] = found
            return found[1]

    def clear(self) -> None:
        with self._lock:
            self._budgets.clear()

    def for_connector(self, connector: BaseConnector, policy: ChunkPolicy) -> RateBudget:
        """The budget of ``connector``'s account under ``policy``: paced below its
        ``rate_limit``, or learning the provider's limit when it sets none."""
        burst = policy.rate_burst or 1
        return self.get(connector.account, RateSettings(policy.rate_limit, burst))
