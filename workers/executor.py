"""One claimed job → one call → one outcome (Done, Retry or Failed), by error class."""

from __future__ import annotations

import random

import msgspec

from ratelimits.backoff import retry_delay
from schemas.job import CachedResult, ClaimedJob, Done, ErrorInfo, Failed, Retry
from workers.client import CallResult
from workers.errors import ProviderError, RetryableError


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_attempts: int = 5
    base_s: float = 0.25  # short: outages are the breaker's job, 429s carry Retry-After
    max_s: float = 60.0
    jitter: float = 0.5


def error_info(error: ProviderError) -> ErrorInfo:
    return ErrorInfo(
        kind=type(error).__name__,
        message=error.message,
        status_code=error.status_code,
        body=error.body,
    )


def decide(
    job: ClaimedJob,
    error: ProviderError,
    started_at: float,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
) -> Retry | Failed:
    """Retry a retryable error while attempts remain; otherwise fail with the reason kept."""
    attempt = job.attempts + 1
    info = error_info(error)
    if isinstance(error, RetryableError) and attempt < policy.max_attempts:
        delay = retry_delay(
            attempt, error.retry_after_s, policy.base_s, policy.max_s, policy.jitter, rng
        )
        return Retry(job.seq, info, next_run_at=now + delay, started_at=started_at)
    first = job.first_started_at or started_at
    return Failed(job.seq, job.id, attempt, info, started_at, now, first, error.request_id)


def done(
    job: ClaimedJob, result: CallResult, started_at: float, now: float, cached: bool = False
) -> Done:
    return Done(
        seq=job.seq,
        job_id=job.id,
        fingerprint=job.fingerprint,
        attempts=job.attempts + (0 if cached else 1),
        body=result.body,
        status_code=result.status_code,
        request_id=result.request_id,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_ms=result.latency_ms,
        started_at=started_at,
        finished_at=now,
        first_started_at=job.first_started_at or started_at,
        cached=cached,
        model=job.model,
    )


def from_cache(job: ClaimedJob, hit: CachedResult, now: float) -> Done:
    """A job answered by an earlier identical request: no call, no attempt's latency."""
    return Done(
        seq=job.seq,
        job_id=job.id,
        fingerprint=job.fingerprint,
        attempts=job.attempts,
        body=hit.body,
        status_code=200,
        request_id="",
        prompt_tokens=hit.prompt_tokens,
        completion_tokens=hit.completion_tokens,
        latency_ms=0.0,
        started_at=now,
        finished_at=now,
        first_started_at=job.first_started_at or now,
        cached=True,
        model=job.model,
    )
