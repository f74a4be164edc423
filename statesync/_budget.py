"""One request budget per API account, shared by every entity and window that uses it.

The engine calls :meth:`RateBudget.acquire` before each request (the budget waits: it is
one of the few places that may) and reports back what the provider said: a 429
(:meth:`RateBudget.throttled`) or a ``remaining``/``reset`` report
(:meth:`RateBudget.observe`). Budgets are found by ``connector.account`` in a
:class:`BudgetRegistry` that the runner or adapter is given (an instance, never a
global): a plain registry holds in-memory budgets for one process; :class:`RedisBudgets`
shares one budget between processes and Inngest steps.

Pacing is GCRA (a virtual-time token bucket): requests are spread ``1 / rate`` apart
and at most ``burst`` may start at once after an idle spell. The pace aims at
``headroom`` (95 %) of the configured limit, drops by half on a 429 (and pauses for its
``Retry-After``), and climbs back by a tenth of the limit per second. Of the provider's
burst the budget uses half, keeping the rest for requests that arrive early or late.
"""

from __future__ import annotations

import asyncio
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
"""Share of the limit per second by which the pace climbs back after a cut."""
_FLOOR = 0.1
"""The pace never drops below this share of the limit."""


@frozen
class RateSettings:
    """A provider's limit for one account: requests per second and tolerated burst."""

    rate: float
    burst: int = 1
    headroom: float = 0.95

    @property
    def target(self) -> float:
        return self.rate * self.headroom

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
        """The provider reported the account's remaining requests."""


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
        self._pace = settings.target
        self._updated = now
        self._tat = now
        self._paused_until = 0.0
        self._cap = 0.0
        self._cap_until = 0.0
        self.requests = 0
        self.throttles = 0

    @property
    def pace(self) -> float:
        """Requests per second the budget currently lets through."""
        return self._pace

    def _reserve(self) -> float:
        with self._lock:
            now = self._clock()
            target = self.settings.target
            self._pace = min(target, self._pace + (now - self._updated) * target * _RECOVERY)
            self._updated = now
            pace = min(self._pace, self._cap) if now < self._cap_until else self._pace
            interval = 1.0 / pace
            tolerance = (self.settings.own_burst - 1) * interval
            start = max(now, self._tat - tolerance, self._paused_until)
            self._tat = max(self._tat, start) + interval
            self.requests += 1
            return start - now

    async def acquire(self) -> None:
        wait = self._reserve()
        if wait > 0:
            await self._sleep(wait)

    async def throttled(self, retry_after: float | None) -> None:
        with self._lock:
            now = self._clock()
            self.throttles += 1
            self._pace = max(self.settings.target * _FLOOR, self._pace * 0.5)
            self._updated = now
            self._paused_until = max(self._paused_until, now + (retry_after or 1.0))
            self._tat = max(self._tat, self._paused_until)

    async def observe(self, info: RateInfo) -> None:
        if info.remaining is None or not info.reset:
            return
        with self._lock:
            now = self._clock()
            if info.remaining <= 0:
                self._paused_until = max(self._paused_until, now + info.reset)
                self._tat = max(self._tat, self._paused_until)
                return
            # What is left must last until the reset: cap the pace until then.
            allowed = info.remaining / info.reset
            if allowed < self._pace:
                self._cap, self._cap_until = max(allowed, 0.5), now + info.reset


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

    def for_connector(self, connector: BaseConnector, policy: ChunkPolicy) -> RateBudget | None:
        """The budget of ``connector``'s account under ``policy``; ``None`` without a limit."""
        if policy.rate_limit is None:
            return None
        burst = policy.rate_burst or 1
        return self.get(connector.account, RateSettings(policy.rate_limit, burst))


# -- Redis ---------------------------------------------------------------------

# KEYS[1]: the budget hash. ARGV: target pace, burst, op ("acquire" | "throttle" |
# "observe"), op argument (retry_after | remaining), reset, recovery share, floor share.
# Time is Redis's own, so every process shares one clock. Returns the seconds to wait.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local target, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local op = ARGV[3]
local s = redis.call('HMGET', KEYS[1], 'pace', 'updated', 'tat', 'paused', 'cap', 'cap_until')
local pace = tonumber(s[1]) or target
local updated = tonumber(s[2]) or now
local tat = tonumber(s[3]) or now
local paused = tonumber(s[4]) or 0
local cap = tonumber(s[5]) or 0
local cap_until = tonumber(s[6]) or 0
pace = math.min(target, pace + (now - updated) * target * tonumber(ARGV[6]))
local wait = 0
if op == 'acquire' then
  local p = pace
  if now < cap_until then p = math.min(pace, cap) end
  local interval = 1 / p
  local start = math.max(now, tat - (burst - 1) * interval, paused)
  tat = math.max(tat, start) + interval
  wait = start - now
elseif op == 'throttle' then
  pace = math.max(target * tonumber(ARGV[7]), pace * 0.5)
  paused = math.max(paused, now + tonumber(ARGV[4]))
  tat = math.max(tat, paused)
elseif op == 'observe' then
  local remaining, reset = tonumber(ARGV[4]), tonumber(ARGV[5])
  if remaining <= 0 then
    paused = math.max(paused, now + reset)
    tat = math.max(tat, paused)
  elseif remaining / reset < pace then
    cap = math.max(remaining / reset, 0.5)
    cap_until = now + reset
  end
end
redis.call('HSET', KEYS[1], 'pace', pace, 'updated', now, 'tat', tat, 'paused', paused,
  'cap', cap, 'cap_until', cap_until)
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""


class RedisRateBudget:
    """A budget kept in Redis: every process and Inngest step of an account shares it."""

    def __init__(self, client: Any, key: str, settings: RateSettings) -> None:
        self.settings = settings
        self.key = key
        self._client = client
        self._script = client.register_script(_SCRIPT)

    async def _run(self, op: str, arg: float = 0.0, reset: float = 0.0) -> float:
        s = self.settings
        args = [s.target, s.own_burst, op, arg, reset, _RECOVERY, _FLOOR]
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
        await self._run("throttle", retry_after or 1.0)

    async def observe(self, info: RateInfo) -> None:
        if info.remaining is not None and info.reset:
            await self._run("observe", info.remaining, info.reset)


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
