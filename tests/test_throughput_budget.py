"""The rate budget on a fake clock: pacing, bursts, 429s and remaining-reports."""

from __future__ import annotations

import itertools

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
    assert registry.for_connector(a, ChunkPolicy()) is None
    assert registry.for_connector(a, policy) is registry.for_connector(b, policy)  # one account
    assert registry.for_connector(a, policy) is registry.get(a.account, RateSettings(50, 4))
