"""The one rate-information parser, and the retry policy's handling of server waits."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest

from statesync import (
    ChunkPolicy,
    Event,
    PageRequest,
    RateInfo,
    RetryPolicy,
    SyncState,
    rate_info_from_headers,
    retry_after_from_headers,
)
from statesync._policy_config import PolicyConfigError, policies_from_mapping
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.errors import ConnectorError, RateLimitedError, TransientError
from statesync.events import RateLimitWait, RetryScheduled
from statesync.stores.memory import MemoryStateStore

NOW = 1_800_000_000.0

# -- Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("0", None),
        ("-3", None),
        ("inf", None),
        ("Infinity", None),
        ("nan", None),
        ("1e300", None),  # absurd: more than a week
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    assert retry_after_from_headers({"Retry-After": value}, now=NOW) == expected


def test_retry_after_http_date_past_and_future() -> None:
    future = email.utils.formatdate(NOW + 30, usegmt=True)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert retry_after_from_headers({"retry-after": future}, now=NOW) == pytest.approx(30)
    assert retry_after_from_headers({"Retry-After": past}, now=NOW) is None


def test_no_headers_no_hint() -> None:
    assert retry_after_from_headers({}) is None
    assert rate_info_from_headers({}) is None
    assert rate_info_from_headers({"Content-Type": "application/json"}) is None


# -- IETF RateLimit fields ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "limit=100, remaining=7, reset=1.5",
        "limit=100;remaining=7;reset=1.5",
        ' limit = 100 ; remaining="7" , reset=1.5 ',
        'limit=100, remaining=7, reset=1.5, policy="100;w=60"',
    ],
)
def test_ratelimit_field_with_either_separator(value: str) -> None:
    assert rate_info_from_headers({"RateLimit": value}) == RateInfo(100, 7, 1.5)


def test_ratelimit_field_of_the_later_drafts_with_its_policy() -> None:
    headers = {"RateLimit": '"default";r=50;t=30', "RateLimit-Policy": '"default";q=100;w=60'}
    assert rate_info_from_headers(headers) == RateInfo(100, 50, 30.0)


def test_ratelimit_split_fields_and_a_bare_policy() -> None:
    headers = {
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "12",
        "RateLimit-Policy": "60;w=60",
    }
    assert rate_info_from_headers(headers) == RateInfo(60, 0, 12.0)
    headers.pop("RateLimit-Limit")
    assert rate_info_from_headers(headers) == RateInfo(60, 0, 12.0)


@pytest.mark.parametrize(
    "value", ["garbage", "limit=x, reset=-1, remaining=nan", "reset=inf", "remaining=-4"]
)
def test_unusable_ratelimit_fields_are_no_report(value: str) -> None:
    assert rate_info_from_headers({"RateLimit": value}) is None


def test_one_bad_part_leaves_only_that_part_out() -> None:
    found = rate_info_from_headers({"RateLimit": "limit=10, remaining=3, reset=inf"})
    assert found == RateInfo(10, 3, None)


# -- X-RateLimit-* (GitHub and many others) ------------------------------------------------


def test_x_ratelimit_reset_is_epoch_seconds() -> None:
    headers = {
        "X-RateLimit-Limit": "5000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(NOW) + 42),
        "X-RateLimit-Used": "5000",
    }
    assert rate_info_from_headers(headers, now=NOW) == RateInfo(5000, 0, 42.0)
    # Nothing remains: the reset is the wait.
    assert retry_after_from_headers(headers, now=NOW) == 42.0


def test_x_ratelimit_small_reset_is_seconds_from_now() -> None:
    headers = {"x-ratelimit-remaining": "3", "x-ratelimit-reset": "20"}
    assert rate_info_from_headers(headers, now=NOW) == RateInfo(None, 3, 20.0)
    assert retry_after_from_headers(headers, now=NOW) is None  # requests remain


@pytest.mark.parametrize("reset", ["1e30", "inf", "-1", str(int(NOW) + 30 * 86400)])
def test_x_ratelimit_absurd_resets_are_dropped(reset: str) -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    assert rate_info_from_headers(headers, now=NOW) == RateInfo(None, 0, None)
    assert retry_after_from_headers(headers, now=NOW) is None


def test_a_reset_in_the_past_is_no_wait() -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) - 5)}
    assert retry_after_from_headers(headers, now=NOW) is None


def test_the_ietf_field_wins_over_x_ratelimit() -> None:
    headers = {
        "RateLimit": "limit=10, remaining=2, reset=3",
        "X-RateLimit-Limit": "99",
        "X-RateLimit-Remaining": "98",
    }
    assert rate_info_from_headers(headers) == RateInfo(10, 2, 3.0)


def test_the_wait_is_the_larger_of_retry_after_and_the_reset() -> None:
    headers = {"Retry-After": "3", "RateLimit": "limit=60, remaining=0, reset=2.5"}
    assert retry_after_from_headers(headers) == 3.0
    headers = {"Retry-After": "1", "RateLimit": "limit=60; remaining=0; reset=4.25"}
    assert retry_after_from_headers(headers) == 4.25


# -- the retry policy and server waits ---------------------------------------------------


def test_server_wait_is_never_shortened_and_spread_above_it() -> None:
    policy = RetryPolicy(jitter=0.2)
    err = RateLimitedError("slow", retry_after=10)
    low = policy.decide(1, err, rand=lambda: 0.0)
    high = policy.decide(1, err, rand=lambda: 1.0)
    assert low.delay == 10 and low.waiting
    assert high.delay == pytest.approx(12.0)  # 20 % of 10 s above it
    # A short wait is spread over at least 20 % of 5 s, so callers told "1 s" part ways.
    short = policy.decide(1, RateLimitedError("slow", retry_after=1), rand=lambda: 1.0)
    assert short.delay == pytest.approx(2.0)


def test_server_timed_rate_limits_are_bounded_by_time_not_count() -> None:
    policy = RetryPolicy(attempts=3, jitter=0, give_up_after=600)
    err = RateLimitedError("slow", retry_after=5)
    assert policy.next_delay(50, err, elapsed=300) == 5  # far past the attempts
    decision = policy.decide(50, err, elapsed=598)
    assert decision.delay is None and decision.reason is not None
    assert "give_up_after" in decision.reason
    # Without the server's wait, a rate limit is counted like any other failure.
    assert policy.next_delay(3, RateLimitedError("slow")) is None


def test_a_wait_beyond_max_wait_fails_saying_what_the_server_asked() -> None:
    policy = RetryPolicy(max_wait=3600)
    decision = policy.decide(1, RateLimitedError("quota", retry_after=86400))
    assert decision.delay is None
    assert decision.reason == "the server asked to wait 86400s, more than max_wait (3600s)"


@pytest.mark.parametrize("wait", [float("inf"), float("nan"), -2.0, 0.0, 1e12])
def test_unusable_server_waits_are_no_hint(wait: float) -> None:
    policy = RetryPolicy(jitter=0, initial_delay=1)
    decision = policy.decide(1, RateLimitedError("slow", retry_after=wait))
    assert decision.delay == 1.0 and not decision.waiting


def test_transient_server_wait_still_counts_attempts() -> None:
    policy = RetryPolicy(attempts=2, jitter=0)
    assert policy.next_delay(1, TransientError("503", retry_after=4)) == 4
    assert policy.next_delay(2, TransientError("503", retry_after=4)) is None


def test_defaults_wait_out_hourly_quotas() -> None:
    policy = RetryPolicy()
    assert 3600 < policy.max_wait < 86400 / 4
    assert policy.give_up_after >= 3 * 3600


def test_policy_files_take_and_check_the_new_fields() -> None:
    doc = {
        "default": {"give_up_after": 7200, "max_wait": 1800.5},
        "connectors": {"stripe": {"kinds": {"rate_limited": {"max_wait": 60}}}},
    }
    found = policies_from_mapping(doc)
    assert found.retry.give_up_after == 7200 and found.retry.max_wait == 1800.5
    stripe = found.retry_for("stripe").for_kind(RateLimitedError.kind)
    assert stripe.max_wait == 60
    bad = {"default": {"give_up_after": float("inf"), "max_wait": -1}}
    with pytest.raises(PolicyConfigError) as info:
        policies_from_mapping(bad, source="p.toml")
    text = str(info.value)
    assert "default.give_up_after: expected a value finite and > 0, got inf" in text
    assert "default.max_wait: expected a value finite and > 0, got -1" in text


# -- the engine: progress resets the count, waits show as waiting -------------------------


class Keep:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def every_other_fails(request: PageRequest, calls: int) -> ConnectorError | None:
    """Every second request fails (every fourth with a server-timed 429), so a chunk
    lands a page between any two failures."""
    if calls % 4 == 0:
        return RateLimitedError("slow down", retry_after=0.01)
    return TransientError("blip") if calls % 2 == 0 else None


async def test_progress_resets_the_attempt_count_and_waits_are_not_failures() -> None:
    rows = [{"id": f"r{i:03d}"} for i in range(40)]
    connector = MemoryConnector({"things": rows}, updated_field=None, fault=every_other_fails)
    keep, dest = Keep(), MemoryDestination()
    runner = LocalRunner(
        connector=connector,
        store=MemoryStateStore(),
        destination=dest,
        # One chunk for the whole entity: the count must reset per page, not per chunk.
        # A generous configured rate keeps the budget from learning a slow pace from
        # these 429s (they come from no real limit).
        chunk_policy=ChunkPolicy(page_size=2, max_iterations=1000, rate_limit=10_000),
        retry_policy=RetryPolicy(attempts=2, initial_delay=0.001, jitter=0),
        listeners=[keep],
    )
    result = await runner.sync(["things"])
    assert result.entities[0].state is SyncState.COMPLETE  # 19 failures, attempts=2
    assert result.entities[0].records == 40
    waits = [e for e in keep.events if isinstance(e, RateLimitWait)]
    retries = [e for e in keep.events if isinstance(e, RetryScheduled)]
    assert len(waits) + len(retries) >= 19 and waits and retries
    assert {e.cause.kind for e in retries} == {"transient"}  # a wait is not a failure
    assert {e.attempt for e in retries} == {1}


async def test_a_wait_too_long_fails_with_the_servers_ask_and_resume_time() -> None:
    def quota(request: PageRequest, calls: int) -> ConnectorError:
        return RateLimitedError("daily quota", retry_after=86400)

    connector = MemoryConnector({"things": [{"id": "a"}]}, updated_field=None, fault=quota)
    runner = LocalRunner(
        connector=connector, store=MemoryStateStore(), destination=MemoryDestination()
    )
    before = datetime.now(UTC)
    result = await runner.sync(["things"])
    entity = result.entities[0]
    assert entity.state is SyncState.FAILED and entity.error is not None
    assert "the server asked to wait 86400s, more than max_wait (7200s)" in entity.error
    resume = datetime.fromisoformat(entity.error.rsplit("resume it after ", 1)[1])
    assert resume - before >= timedelta(seconds=86400 - 2)
    assert connector.calls == 1  # failed at once: not slept, not retried


def test_status_shows_a_server_timed_rate_limit_as_waiting() -> None:
    from statesync import EntityRecord, ErrorInfo, SyncMode
    from statesync._cli._display import status_rows

    now = datetime.now(UTC)
    limited = ErrorInfo("rate_limited", "slow down", now, retry_after=30.0)
    blip = ErrorInfo("transient", "HTTP 503", now)
    records = [
        EntityRecord("j", "a", SyncMode.FULL, SyncState.FETCHING, attempts=3, last_error=limited),
        EntityRecord("j", "b", SyncMode.FULL, SyncState.FETCHING, attempts=1, last_error=blip),
        EntityRecord("j", "c", SyncMode.FULL, SyncState.FAILED, attempts=9, last_error=limited),
    ]
    assert [row["waiting"] for row in status_rows(records)] == [True, False, False]
