"""The account's rate budget kept in Redis (``pip install 'statesync[redis]'``).

The same algorithm as :class:`~statesync._budget.MemoryRateBudget`, run as one Lua script
with Redis's clock, so every process and Inngest step of an account shares one budget.
The module imports no Redis code until a budget is opened from a URL (a client passed in
means Redis is installed), so ``import statesync`` stays free of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from statesync._budget import (
    _CALM,
    _DECREASE,
    _FIRST_WINDOW,
    _FLOOR,
    _INCREASE,
    _MIN_PACE,
    _MIN_STEP,
    _RECENT,
    _RECOVERY,
    _STEEP,
    BudgetRegistry,
    RateSettings,
    _usable,
)
from statesync._internal import internal_error
from statesync._models import RateInfo
from statesync.errors import MissingExtraError, StatesyncError, TransientError

__all__ = ["RedisBudgets", "RedisRateBudget", "map_budget_error"]


def map_budget_error(exc: Exception) -> StatesyncError:
    """What a failed budget call means for the request it gates.

    A budget Redis that is down is a transient failure of that request: the chunk is
    retried under its policy like any other. Anything else is a bug (the typed internal
    error), never a bare re-raise.
    """
    from statesync.stores._redis_errors import RedisError, map_redis_error

    if not isinstance(exc, RedisError):
        return internal_error(exc, "rate budget error")
    error = TransientError(f"rate budget unavailable: {map_redis_error(exc)}")
    error.__cause__ = exc
    return error


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
            raise map_budget_error(exc) from exc
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
            raise MissingExtraError("Redis rate budgets", "redis", "redis") from exc
        return cls(aioredis.Redis.from_url(url, decode_responses=True), prefix=prefix)
