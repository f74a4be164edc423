"""One request budget per API account, shared by every entity and window that uses it.

The engine calls :meth:`RateBudget.acquire` before each request (the budget waits: it is
one of the few places that may) and reports back what the provider said: a 429
(:meth:`RateBudget.throttled`) or a ``remaining``/``reset`` report
(:meth:`RateBudget.observe`). Budgets are found by ``connector.account`` in a
:class:`BudgetRegistry` that the runner or adapter is given (an instance, never a
global): a plain registry holds in-memory budgets for one process; :class:`RedisBudgets`
shares one budget between processes and Inngest steps.

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
from statesync.errors import TransientError, translate

if TYPE_CHECKING:
    from statesync._policy import ChunkPolicy
    from statesync.connector import BaseConnector

__all__ = [
    "BudgetRegistry",
    "MemoryRateBudget",
    "RateBudget",
    "RateSettings",
    "RedisBudgets",
    "RedisRateBudget",
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


# -- Redis ---------------------------------------------------------------------

# KEYS[1]: the budget hash. ARGV: target pace (0: learn the limit), burst, op
# ("acquire" | "throttle" | "observe"), op argument (retry_after | remaining), reset, then
# the constants (in _CONSTANTS' order). The same
# algorithm as MemoryRateBudget, with Redis's clock, so every process shares one.
# Returns the seconds to wait.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local target, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local op, arg, reset = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local recovery, floor, decrease = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local increase, min_pace, calm = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local min_step, first_window = tonumber(ARGV[12]), tonumber(ARGV[13])
local steep, recent = tonumber(ARGV[14]), tonumber(ARGV[15])
local s = redis.call('HMGET', KEYS[1], 'pace', 'updated', 'tat', 'paused', 'cap', 'cap_until',
  'calm_until', 'step', 'win_start', 'win_count', 'sent', 'last_cut')
local pace = tonumber(s[1]) or target
local updated = tonumber(s[2]) or now
local tat = tonumber(s[3]) or now
local paused = tonumber(s[4]) or 0
local cap = tonumber(s[5]) or 0
local cap_until = tonumber(s[6]) or 0
local calm_until = tonumber(s[7]) or 0
local step = tonumber(s[8]) or 0
local win_start = tonumber(s[9]) or now
local win_count = tonumber(s[10]) or 0
local sent = tonumber(s[11]) or 0
local last_cut = tonumber(s[12]) or -1e18
if target > 0 then
  pace = math.min(target, pace + (now - updated) * target * recovery)
end
local wait = 0
local function cut(seconds)
  if now < calm_until then return end
  calm_until = now + seconds + calm
  if target > 0 then
    pace = math.max(target * floor, pace * 0.5)
    return
  end
  local elapsed = now - win_start
  local sending = sent
  if elapsed < 1 and sent <= 0 then sending = win_count / math.max(elapsed, first_window)
  elseif elapsed < 1 then sending = win_count + sent * (1 - elapsed) end
  local base = pace
  if pace > 0 and sending > 0 then base = math.min(pace, sending)
  elseif pace <= 0 then base = sending end
  local share = decrease
  if pace <= 0 or now - last_cut < recent then share = steep end
  pace = math.max(min_pace, base * share)
  step = math.max(min_step, base * increase)
  last_cut = now
end
local function pause(seconds)
  paused = math.max(paused, now + seconds)
  tat = math.max(tat, paused)
end
if op == 'acquire' then
  if now - win_start >= 1 then
    sent = win_count / (now - win_start)
    win_start, win_count = now, 0
  end
  win_count = win_count + 1
  local p = pace
  if p <= 0 then p = math.huge end
  if now < cap_until then p = math.min(p, cap) end
  local interval = 0
  if p < math.huge then interval = 1 / p end
  local start = math.max(now, tat - (burst - 1) * interval, paused)
  tat = math.max(tat, start) + interval
  wait = start - now
elseif op == 'throttle' then
  cut(arg)
  pause(arg)
elseif op == 'observe' then
  if target <= 0 and pace > 0 then pace = pace + step / pace end
  if arg >= 0 and reset > 0 then
    if arg <= 0 then
      cut(reset)
      pause(reset)
    elseif pace <= 0 or arg / reset < pace then
      cap = math.max(arg / reset, 0.5)
      cap_until = now + reset
    end
  end
end
redis.call('HSET', KEYS[1], 'pace', pace, 'updated', now, 'tat', tat, 'paused', paused,
  'cap', cap, 'cap_until', cap_until, 'calm_until', calm_until, 'step', step,
  'win_start', win_start, 'win_count', win_count, 'sent', sent, 'last_cut', last_cut)
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""
_CONSTANTS = (
    _RECOVERY,
    _FLOOR,
    _DECREASE,
    _INCREASE,
    _MIN_PACE,
    _CALM,
    _MIN_STEP,
    _FIRST_WINDOW,
    _STEEP,
    _RECENT,
)


class RedisRateBudget:
    """A budget kept in Redis: every process and Inngest step of an account shares it."""

    def __init__(self, client: Any, key: str, settings: RateSettings) -> None:
        self.settings = settings
        self.key = key
        self._client = client
        self._script = client.register_script(_SCRIPT)

    async def _run(self, op: str, arg: float = 0.0, reset: float = 0.0) -> float:
        s = self.settings
        args = [s.target or 0.0, s.own_burst, op, arg, reset, *_CONSTANTS]
        try:
            reply = await self._script(keys=[self.key], args=args)
        except Exception as exc:
            # A budget Redis that is down is a transient failure of the request it gates:
            # the chunk is retried under its policy like any other.
            raise TransientError(f"rate budget unavailable: {translate(exc)}") from exc
        return float(reply)

    async def acquire(self) -> None:
        wait = await self._run("acquire")
        if wait > 0:
            await asyncio.sleep(wait)

    async def throttled(self, retry_after: float | None) -> None:
        await self._run("throttle", _usable(retry_after, 1.0))

    async def observe(self, info: RateInfo) -> None:
        if info.remaining is not None and info.reset:
            await self._run("observe", info.remaining, _usable(info.reset, 1.0))
        elif self.settings.target is None:
            await self._run("observe", -1.0)  # a success: the learned pace climbs


class RedisBudgets(BudgetRegistry):
    """A registry of Redis budgets under ``prefix``, shared by every process using it."""

    def __init__(self, client: Any, *, prefix: str = "statesync") -> None:
        self.client = client
        self.prefix = prefix
        super().__init__(lambda account, s: RedisRateBudget(client, self.key(account), s))

    def key(self, account: str) -> str:
        return f"{self.prefix}:budget:{account}"

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "statesync") -> RedisBudgets:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            from statesync.errors import MissingExtraError

            raise MissingExtraError("Redis rate budgets", "redis", "redis") from exc
        return cls(aioredis.Redis.from_url(url, decode_responses=True), prefix=prefix)
