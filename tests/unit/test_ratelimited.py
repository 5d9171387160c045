"""A 429 spends no attempt; the give-up ceiling fails a job the server never lets through."""

from __future__ import annotations

import random

from schemas.job import ClaimedJob, Failed, Retry
from workers.errors import RateLimited
from workers.ratelimited import RateLimitedJobs, RateLimitPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(seq: int = 1, attempts: int = 4) -> ClaimedJob:
    return ClaimedJob(seq, f"j{seq}", "request", attempts, "fp", b"{}", first_started_at=900.0)


def test_a_429_is_retried_later_without_spending_an_attempt() -> None:
    clock = Clock()
    jobs = RateLimitedJobs(RateLimitPolicy(retry_s=0.2), random.Random(0), clock)
    bare = jobs.outcome(job(), RateLimited("HTTP 429", retry_after_s=None), 999.0)
    told = jobs.outcome(job(2), RateLimited("HTTP 429", retry_after_s=3.0), 999.0)
    assert isinstance(bare, Retry)
    assert not bare.spend_attempt
    assert 1000.1 <= bare.next_run_at <= 1000.2
    assert bare.error.kind == "RateLimited"
    assert isinstance(told, Retry)
    assert told.next_run_at == 1003.0  # the server's Retry-After


def test_the_ceiling_counts_from_the_first_429_and_says_why() -> None:
    clock = Clock()
    jobs = RateLimitedJobs(RateLimitPolicy(give_up_s=60.0), random.Random(0), clock)
    error = RateLimited("HTTP 429", retry_after_s=None, body='{"error": {}}')
    assert isinstance(jobs.outcome(job(), error, 999.0), Retry)
    clock.now += 59.0
    assert isinstance(jobs.outcome(job(), error, 1058.0), Retry)
    clock.now += 1.0
    failed = jobs.outcome(job(), error, 1059.0)
    assert isinstance(failed, Failed)
    assert failed.error.kind == "RateLimitedTooLong"
    assert "never let this request through" in failed.error.message
    assert failed.error.status_code == 429
    assert failed.error.body == '{"error": {}}'
    assert failed.attempts == 5
    assert failed.first_started_at == 900.0
    assert len(jobs) == 0


def test_a_job_that_got_through_starts_afresh() -> None:
    clock = Clock()
    jobs = RateLimitedJobs(RateLimitPolicy(give_up_s=60.0), random.Random(0), clock)
    error = RateLimited("HTTP 429", retry_after_s=None)
    jobs.outcome(job(), error, 999.0)
    jobs.forget(1)
    clock.now += 100.0
    assert isinstance(jobs.outcome(job(), error, 1099.0), Retry)


def test_past_the_ceiling_a_job_fails_before_calling_again() -> None:
    clock = Clock()
    jobs = RateLimitedJobs(RateLimitPolicy(give_up_s=60.0), random.Random(0), clock)
    assert jobs.expired(job(), 999.0) is None  # never rate-limited
    jobs.outcome(job(), RateLimited("HTTP 429", retry_after_s=None), 999.0)
    clock.now += 30.0
    assert jobs.expired(job(), 1029.0) is None
    clock.now += 30.0
    gone = jobs.expired(job(), 1059.0)
    assert gone is not None
    assert gone.error.kind == "RateLimitedTooLong"
    assert len(jobs) == 0
