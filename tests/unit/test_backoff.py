"""Backoff and Retry-After: pure functions, checked over many seeds and attempts."""

from __future__ import annotations

import random

import pytest

from ratelimits.backoff import exponential_backoff, parse_retry_after, retry_delay

BASE_S = 0.5
MAX_S = 30.0


def ceiling(attempt: int) -> float:
    return min(MAX_S, BASE_S * 2.0 ** (attempt - 1))


@pytest.mark.parametrize(("jitter", "low_fraction"), [(1.0, 0.0), (0.5, 0.5), (0.25, 0.75)])
def test_jittered_delay_stays_within_its_band(jitter: float, low_fraction: float) -> None:
    rng = random.Random(3)
    for attempt in range(1, 15):
        top = ceiling(attempt)
        delays = [exponential_backoff(attempt, BASE_S, MAX_S, jitter, rng) for _ in range(200)]
        assert min(delays) >= top * low_fraction
        assert max(delays) <= top
        # the random part is really used: draws spread over most of the band
        assert max(delays) - min(delays) > 0.8 * top * jitter


def test_no_jitter_doubles_up_to_the_cap() -> None:
    rng = random.Random(0)
    delays = [exponential_backoff(attempt, BASE_S, MAX_S, 0.0, rng) for attempt in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    rng = random.Random(0)
    assert exponential_backoff(10_000, BASE_S, MAX_S, 0.0, rng) == MAX_S
    assert 0.0 <= exponential_backoff(10**9, BASE_S, MAX_S, 1.0, rng) <= MAX_S


@pytest.mark.parametrize(
    ("attempt", "jitter", "base_s"), [(0, 0.5, 1.0), (-1, 0.5, 1.0), (1, 1.5, 1.0), (1, 0.5, -1.0)]
)
def test_invalid_arguments_are_rejected(attempt: int, jitter: float, base_s: float) -> None:
    with pytest.raises(ValueError, match=r"attempt|jitter|negative"):
        exponential_backoff(attempt, base_s, MAX_S, jitter, random.Random(0))


def test_retry_delay_without_retry_after_is_the_backoff() -> None:
    for attempt in range(1, 8):
        expected = exponential_backoff(attempt, BASE_S, MAX_S, 1.0, random.Random(attempt))
        got = retry_delay(attempt, None, BASE_S, MAX_S, 1.0, random.Random(attempt))
        assert got == expected


def test_retry_after_is_a_floor_never_cut_by_the_cap() -> None:
    rng = random.Random(11)
    for attempt in range(1, 12):
        for retry_after_s in (0.0, 0.02, 1.0, 7.5, 45.0, 120.0):
            delay = retry_delay(attempt, retry_after_s, BASE_S, MAX_S, 1.0, rng)
            assert delay >= retry_after_s
    assert retry_delay(1, 120.0, BASE_S, MAX_S, 1.0, rng) == 120.0


def test_longer_backoff_wins_over_a_short_retry_after() -> None:
    # the fifth "retry in 0.1 s" in a row: our backoff (8 s) is longer and applies
    assert retry_delay(5, 0.1, BASE_S, MAX_S, 0.0, random.Random(0)) == 8.0


def test_retry_after_ms_is_read_first() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "10"}
    assert parse_retry_after(headers) == 1.5


def test_retry_after_seconds_and_case_insensitive_names() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"RETRY-AFTER-MS": "20"}) == 0.02
    assert parse_retry_after({"retry-after": " 2.5 "}) == 2.5


def test_unreadable_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "-5", "retry-after": "4"}) == 4.0


def test_retry_after_as_http_date() -> None:
    # Wed, 21 Oct 2015 07:28:00 GMT is 1445412480 seconds after the epoch
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert parse_retry_after(headers, now_epoch_s=1445412480 - 30) == pytest.approx(30.0)
    assert parse_retry_after(headers, now_epoch_s=1445412480 + 30) == 0.0
    asctime = {"retry-after": "Wed Oct 21 07:28:00 2015"}
    assert parse_retry_after(asctime, now_epoch_s=1445412480 - 4) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "headers",
    [{}, {"retry-after": "soon"}, {"retry-after": "-3"}, {"retry-after": "nan"}, {"x": "1"}],
)
def test_missing_or_nonsense_retry_after_is_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now_epoch_s=0.0) is None
