"""The rate budget on a fake clock: pacing, bursts, 429s and remaining-reports."""

from __future__ import annotations

import itertools

import pytest

from statesync import ChunkPolicy
from statesync._budget import (
    BudgetRegistry,
    MemoryRateBudget,
    RateSettings,
)
from statesync._models import RateInfo
from statesync.connectors.memory import MemoryConnector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_requests_are_spread_at_the_pace_after_a_burst() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(100, burst=10), clock=clock, sleep=clock.sleep)
    waits = []
    for _ in range(25):
        reserved = budget._reserve()
        waits.append(reserved)
    # Half the provider's burst goes at once, then one every 1/95 s.
    assert waits[:5] == [0.0] * 5
    gaps = [b - a for a, b in itertools.pairwise(waits[5:])]
    assert all(abs(g - 1 / 95) < 1e-9 for g in gaps)
    # Over any stretch, never more than rate * t + burst.
    assert 95 * waits[-1] + 5 + 1e-9 >= 25


async def test_a_429_halves_the_pace_pauses_and_recovers() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(100, burst=2), clock=clock, sleep=clock.sleep)
    await budget.throttled(2.0)
    assert budget.pace == 95 / 2
    assert budget._reserve() >= 2.0  # nothing goes out before Retry-After
    clock.now += 10
    budget._reserve()
    assert budget.pace == 95  # a tenth of the limit per second back up


async def test_remaining_reports_cap_or_pause() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(100, burst=2), clock=clock, sleep=clock.sleep)
    await budget.observe(RateInfo(limit=100, remaining=0, reset=0.5))
    assert budget._reserve() >= 0.5
    clock.now += 5
    await budget.observe(RateInfo(limit=100, remaining=10, reset=1.0))
    budget._reserve()
    second = budget._reserve()
    assert second >= 1 / 10 - 1e-9  # 10 left for the next second: 10 a second


def test_one_budget_per_account_from_the_policy() -> None:
    registry = BudgetRegistry()
    a, b = MemoryConnector({}), MemoryConnector({})
    policy = ChunkPolicy(rate_limit=50, rate_burst=4)
    learning = registry.for_connector(a, ChunkPolicy())
    assert isinstance(learning, MemoryRateBudget) and learning.settings.rate is None
    assert registry.for_connector(a, policy) is registry.for_connector(b, policy)  # one account
    assert registry.for_connector(a, policy) is registry.get(a.account, RateSettings(50, 4))


# -- learning the limit (AIMD) when none is configured -------------------------------


async def _send(budget: MemoryRateBudget, clock: Clock, seconds: float, per_second: float) -> int:
    """Requests as a client sending ``per_second`` would, each a success; returns them."""
    sent, end = 0, clock.now + seconds
    while clock.now < end:
        await budget.acquire()
        await budget.observe(RateInfo())
        clock.now += 1 / per_second
        sent += 1
    return sent


async def test_an_unknown_limit_runs_at_full_speed_until_a_429() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    start = clock.now
    assert await _send(budget, clock, 3.0, 200) >= 599
    assert budget.pace is None
    assert clock.now - start == pytest.approx(3.0, abs=0.01)  # the budget never waited


async def test_a_429_cuts_the_learned_pace_to_a_share_of_the_rate_sent() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    await _send(budget, clock, 2.0, 40)
    await budget.throttled(1.0)
    assert budget.pace == pytest.approx(0.5 * 40, rel=0.05)  # the first cut halves
    assert budget._reserve() >= 1.0 - 1e-9  # paused for the server's Retry-After
    # 429s of requests sent before the cut (within the calm spell) cut nothing more.
    await budget.throttled(1.0)
    assert budget.pace == pytest.approx(0.5 * 40, rel=0.05)
    # One soon after the calm spell halves again; one after the pace held, 80 %.
    clock.now += 2.5
    await budget.throttled(0.1)
    assert budget.pace == pytest.approx(0.25 * 40, rel=0.05)
    clock.now += 6.0
    await budget.throttled(0.1)
    assert budget.pace == pytest.approx(0.8 * 0.25 * 40, rel=0.05)


async def test_successes_climb_additively_and_a_later_429_cuts_again() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    await _send(budget, clock, 2.0, 50)
    await budget.throttled(None)
    cut = budget.pace
    assert cut is not None
    clock.now += 3.0  # past the pause and the calm spell
    await _send(budget, clock, 10.0, 1000)  # asks for more than the pace lets through
    climbed = budget.pace
    assert climbed is not None
    # About 2 % of the rate at the cut per second: +10 in 10 s from 25.
    assert climbed - cut == pytest.approx(0.02 * 50 * 10, rel=0.2)
    await budget.throttled(1.0)  # long after the last cut: to 80 %
    assert budget.pace == pytest.approx(0.8 * climbed, rel=0.05)


async def test_the_paced_rate_follows_the_learned_pace() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    await _send(budget, clock, 2.0, 25)
    await budget.throttled(0.5)
    clock.now += 2.0
    start = clock.now
    sent = await _send(budget, clock, 5.0, 1000)
    pace = budget.pace
    assert pace is not None
    assert sent / (clock.now - start) <= pace + 1e-6
    assert sent / (clock.now - start) >= 0.9 * 0.5 * 25


async def test_nothing_remaining_cuts_and_pauses_until_the_reset() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    await _send(budget, clock, 1.0, 30)
    await budget.observe(RateInfo(limit=30, remaining=0, reset=0.75))
    assert budget.pace is not None and budget.pace < 30
    assert budget._reserve() >= 0.75 - 1e-9


async def test_a_remaining_report_caps_an_unpaced_budget_until_the_reset() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    await budget.observe(RateInfo(limit=100, remaining=4, reset=2.0))
    budget._reserve()
    assert budget._reserve() == pytest.approx(0.5)  # 4 left for 2 s: 2 a second
    clock.now += 3.0
    budget._reserve()
    assert budget._reserve() == 0.0  # the reset passed: full speed again


async def test_a_configured_rate_stays_a_ceiling() -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(10, burst=1), clock=clock, sleep=clock.sleep)
    start = clock.now
    sent = await _send(budget, clock, 20.0, 1000)
    assert sent / (clock.now - start) <= 9.5 + 0.1
    assert budget.pace == 9.5


@pytest.mark.parametrize("wait", [float("inf"), float("nan"), -5.0, 1e12])
async def test_unusable_waits_pause_for_a_second_not_forever(wait: float) -> None:
    clock = Clock()
    budget = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    await budget.throttled(wait)
    assert budget._reserve() == pytest.approx(1.0)
    other = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    await other.observe(RateInfo(remaining=0, reset=wait))
    assert other._reserve() == pytest.approx(1.0)


async def test_the_redis_budget_learns_the_same_way(redis_url: str, key_prefix: str) -> None:
    """The Lua twin of MemoryRateBudget: same cut, same climb, same pause (Redis's clock)."""
    import redis.asyncio as aioredis

    from statesync.stores._redis_budget import RedisRateBudget

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    key = f"{key_prefix}:budget:acct"
    budget = RedisRateBudget(client, key, RateSettings(None))
    clock = Clock()
    twin = MemoryRateBudget(RateSettings(None), clock=clock, sleep=clock.sleep)
    try:
        waits = [await budget._run("acquire") for _ in range(10)]
        for _ in range(10):
            twin._reserve()
        assert waits == [0.0] * 10  # unpaced until the limit shows
        await budget.throttled(1.0)
        await twin.throttled(1.0)
        pace = _num(await client.hget(key, "pace"))
        assert twin.pace is not None
        assert pace == pytest.approx(twin.pace, rel=0.05)  # half of 10 in the first 0.2 s
        assert await budget._run("acquire") >= 0.9  # paused for the Retry-After
        await budget.observe(RateInfo())
        await twin.observe(RateInfo())
        assert _num(await client.hget(key, "pace")) == pytest.approx(twin.pace, rel=0.05)
        assert _num(await client.hget(key, "pace")) > pace  # a success climbs
        await budget.throttled(float("inf"))  # within the calm spell: no cut, no endless wait
        assert _num(await client.hget(key, "paused")) < _num(await client.hget(key, "updated")) + 2
    finally:
        await client.delete(key)
        await client.aclose()


def _num(stored: bytes | str | None) -> float:
    assert stored is not None, "the field is missing from the budget's hash"
    return float(stored)
