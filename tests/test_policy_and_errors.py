from __future__ import annotations

import email.utils
import time

import pytest

from statesync import RetryPolicy
from statesync.errors import (
    AuthError,
    ErrorKind,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
    parse_retry_after,
)


def test_backoff_grows_and_caps_without_jitter() -> None:
    policy = RetryPolicy(attempts=10, initial_delay=1, multiplier=2, max_delay=5, jitter=0)
    err = TransientError("boom")
    assert [policy.next_delay(a, err) for a in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(attempts=3, initial_delay=2, jitter=0.5)
    assert policy.next_delay(1, TransientError("x"), rand=lambda: 0.0) == 2
    assert policy.next_delay(1, TransientError("x"), rand=lambda: 1.0) == 3


def test_gives_up_after_attempts_and_on_non_retryable_kinds() -> None:
    policy = RetryPolicy(attempts=2, jitter=0)
    assert policy.next_delay(1, TransientError("x")) is not None
    assert policy.next_delay(2, TransientError("x")) is None
    assert policy.next_delay(1, AuthError("no")) is None


def test_server_retry_after_wins_when_respected() -> None:
    err = RateLimitedError("slow down", retry_after=7)
    assert RetryPolicy(jitter=0).next_delay(1, err) == 7
    assert RetryPolicy(jitter=0, respect_retry_after=False).next_delay(1, err) == 1


def test_retry_on_can_be_narrowed() -> None:
    policy = RetryPolicy(retry_on={"rate_limited"})
    assert policy.next_delay(1, MalformedResponseError("bad")) is None
    assert policy.retry_on == frozenset({ErrorKind.RATE_LIMITED})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("1.5", 1.5), ("0", None), ("-3", None), ("soon", None), (None, None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = time.time()
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(future, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(past, now=now) is None


def test_invalid_policy_values_are_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="initial_delay"):
        RetryPolicy(initial_delay=-1)
