"""A 429 is "later", not a failure: the retry policy of rate-limited calls.

A call answered with a rate limit (`RateLimited`: HTTP 429, or a provider's error type meaning
the same) never spends one of the job's `--max-attempts`: like an outage, it says nothing about
the request, only about when. The learned rate (ratelimits/learned.py) slows everyone down; the
job goes back to the queue, due after the server's Retry-After (or `retry_s`), and waits its
turn at the limiter.

One ceiling ends it: `give_up_s` after the first 429 this process saw for the job (a generous
hour by default), the job fails with `RateLimitedTooLong`, which says the server never let it
through. The clock starts again in a new process: a resumed run gives every job the full time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.job import ClaimedJob, ErrorInfo, Failed, Retry
from workers.errors import RateLimited


class RateLimitPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    give_up_s: Annotated[float, Meta(gt=0)] = 3600.0
    retry_s: Annotated[float, Meta(ge=0)] = 0.25  # with no Retry-After: back in the queue after


class RateLimitedJobs:
    """When each unfinished job first got a 429 in this process (for the give-up ceiling)."""

    def __init__(
        self, policy: RateLimitPolicy, rng: random.Random, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy
        self._rng = rng
        self._clock = clock
        self._first_429_at: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._first_429_at)

    def expired(self, job: ClaimedJob, started_at: float) -> Failed | None:
        """Before a call: the job's ceiling has passed since its first 429 (it fails without
        another call, and without waiting at the limiter), else None."""
        first = self._first_429_at.get(job.seq)
        if first is None or self._clock() - first < self.policy.give_up_s:
            return None
        error = RateLimited("HTTP 429", retry_after_s=None)
        return self._give_up(job, error, started_at, self._clock() - first)

    def outcome(self, job: ClaimedJob, error: RateLimited, started_at: float) -> Retry | Failed:
        """Retry later without spending an attempt, unless the ceiling has passed."""
        now = self._clock()
        first = self._first_429_at.setdefault(job.seq, now)
        limited_s = now - first
        info = ErrorInfo(
            kind=type(error).__name__,
            message=error.message,
            status_code=error.status_code,
            body=error.body,
        )
        if limited_s >= self.policy.give_up_s:
            return self._give_up(job, error, started_at, limited_s)
        wait_s = error.retry_after_s
        if wait_s is None:  # jittered, so that rejected jobs do not come back in a lump
            wait_s = self.policy.retry_s * (0.5 + 0.5 * self._rng.random())
        return Retry(job.seq, info, now + wait_s, started_at, spend_attempt=False)

    def _give_up(
        self, job: ClaimedJob, error: RateLimited, started_at: float, limited_s: float
    ) -> Failed:
        self._first_429_at.pop(job.seq, None)
        info = ErrorInfo(
            kind="RateLimitedTooLong",
            message=f"{error.message}: rate-limited for {limited_s:.0f} s since its first "
            f"429 (--rate-limit-give-up-s {self.policy.give_up_s:g}); the server never "
            "let this request through",
            status_code=error.status_code,
            body=error.body,
        )
        first_started = job.first_started_at or started_at
        return Failed(
            job.seq,
            job.id,
            job.attempts + 1,
            info,
            started_at,
            self._clock(),
            first_started,
            error.request_id,
        )

    def forget(self, seq: int) -> None:
        """The job got through (or failed for another reason): its clock stops."""
        self._first_429_at.pop(seq, None)
