"""One claimed job → one outcome, through the gates every call passes.

dispatch(job):
    an identical request in flight?  → wait for it and share its answer (cached=True)
    breaker.admit()                  → during an outage, wait (or be the one probe)
    limiter.acquire(estimate)        → the model's RPM/TPM budget, first come first served
    transport.call()                 → CallResult, or a ProviderError by class; abandoned
                                       (CallAbandoned) past its adaptive deadline
    settle + adapt                   → real usage back to the limiter, headers, and 429s to
                                       the learned rate (ratelimits/learned.py) when learning
    a 429                            → Retry without spending an attempt, until the job's
                                       give-up ceiling (workers/ratelimited.py)
    → Done | Retry | Failed          (an outage failure spends no attempt)

`stop_waiting()` (on Ctrl-C) ends every wait at the breaker or the limiter at once with
`DispatchStoppedError`: those jobs have sent nothing and go straight back to the queue, so a stop
during an outage or a long rate-limit pause does not sit out the grace period meant for calls
in flight.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from ratelimits.breaker import CircuitBreaker, Permit
from ratelimits.breaker import Outcome as CallOutcome
from ratelimits.learned import LearnerRegistry, RateLearner
from ratelimits.limiter import LimiterRegistry, RateLimiter, Reservation
from schemas.job import ClaimedJob, Done, Failed, Retry
from workers.abandon import call_within_deadline
from workers.client import CallResult, ChatTransport
from workers.deadline import Deadlines, key_of
from workers.errors import ProviderError, RateLimited, is_outage_like
from workers.executor import RetryPolicy, decide, done, error_info
from workers.ratelimited import RateLimitedJobs

#: Checks a completion's content for its stage; raises InvalidOutput (retryable) if wrong.
Validator = Callable[[ClaimedJob, CallResult], None]


class DispatchStoppedError(Exception):
    """The run is stopping and this job never left the breaker or limiter: release it."""


class Dispatcher:
    def __init__(
        self,
        transport: ChatTransport,
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        limits: LimiterRegistry | None,
        rng: random.Random,
        coalesce: bool = True,
        validator: Validator | None = None,
        deadlines: Deadlines | None = None,
        learners: LearnerRegistry | None = None,
        rate_limited: RateLimitedJobs | None = None,
    ) -> None:
        # issue 15: the learned rate per model (needs `limits`), and 429s that spend no attempt
        self._learners = learners if limits is not None else None
        self._rate_limited = rate_limited
        self._validator = validator
        self._deadlines = deadlines
        self._transport = transport
        self._policy = policy
        self._breaker = breaker
        self._limits = limits
        self._rng = rng
        self._coalesce = coalesce
        # fingerprint → the answer of the call in flight (None if it failed); kept until the
        # writer has committed it (`forget`), so that nothing identical is paid in between
        self._inflight: dict[str, asyncio.Future[CallResult | None]] = {}
        self.outage_failures = 0
        self._gated: set[asyncio.Task[object]] = set()  # tasks waiting at the breaker/limiter
        self._stopping = False

    async def close(self) -> None:
        await self._transport.close()

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def learners(self) -> LearnerRegistry | None:
        """The learned rate per model (None when not learning)."""
        return self._learners

    @property
    def limits(self) -> LimiterRegistry | None:
        """The client-side budgets (a fleet worker sets its share of the run's on them)."""
        return self._limits

    async def dispatch(self, job: ClaimedJob) -> Done | Retry | Failed:
        if self._coalesce:
            while (leader := self._inflight.get(job.fingerprint)) is not None:
                started = time.time()
                shared = await asyncio.shield(leader)
                if shared is not None:
                    return done(job, shared, started, time.time(), cached=True)
                # the leader failed and left: look again (another follower may lead now)
            future: asyncio.Future[CallResult | None] = asyncio.get_running_loop().create_future()
            self._inflight[job.fingerprint] = future
        started = time.time()
        if self._rate_limited is not None and (gone := self._rate_limited.expired(job, started)):
            self._settle_leader(job.fingerprint, None)
            return gone
        try:
            result = await self._call(job)
            if self._validator is not None:
                self._validator(job, result)
        except ProviderError as error:
            self._settle_leader(job.fingerprint, None)
            return self._on_error(job, error, started)
        except BaseException:
            self._settle_leader(job.fingerprint, None)
            raise
        self._settle_leader(job.fingerprint, result)
        if self._rate_limited is not None:
            self._rate_limited.forget(job.seq)
        return done(job, result, started, time.time())

    def stopping(self) -> bool:
        return self._stopping

    def stop_waiting(self) -> None:
        """End every wait at the gates (and refuse new ones) with DispatchStoppedError."""
        if self._stopping:
            return  # once: a second cancel would turn DispatchStoppedError into CancelledError
        self._stopping = True
        for task in self._gated:
            task.cancel()

    def forget(self, fingerprint: str) -> None:
        """No claimed job has this fingerprint any more and its result is committed: later
        identical requests are served by the cache at claim time."""
        future = self._inflight.get(fingerprint)
        if future is not None and future.done():
            del self._inflight[fingerprint]

    def _settle_leader(self, fingerprint: str, result: CallResult | None) -> None:
        future = self._inflight.get(fingerprint) if self._coalesce else None
        if future is not None and not future.done():
            future.set_result(result)
            if result is None:
                del self._inflight[fingerprint]

    def _on_error(self, job: ClaimedJob, error: ProviderError, started: float) -> Retry | Failed:
        now = time.time()
        if error.during_outage:
            self.outage_failures += 1
            return Retry(job.seq, error_info(error), now, started, spend_attempt=False)
        if self._rate_limited is not None:
            if isinstance(error, RateLimited):
                return self._rate_limited.outcome(job, error, started)
            self._rate_limited.forget(job.seq)
        return decide(job, error, started, now, self._policy, self._rng)

    async def _pass_gates(
        self, job: ClaimedJob, limiter: RateLimiter | None
    ) -> tuple[Permit, Reservation | None]:
        """Breaker, then limiter; DispatchStoppedError if the run stops while waiting."""
        task = asyncio.current_task()
        assert task is not None
        if self.stopping():
            raise DispatchStoppedError
        self._gated.add(task)
        try:
            permit = await self._breaker.admit()
            try:
                reservation = await limiter.acquire(job.est_tokens) if limiter else None
            except BaseException:
                self._breaker.abandon(permit)
                raise
        except asyncio.CancelledError:
            if not self.stopping() or task.uncancel() > 0:
                raise  # cancelled by someone else as well
            raise DispatchStoppedError from None
        finally:
            self._gated.discard(task)
        return permit, reservation

    async def _call(self, job: ClaimedJob) -> CallResult:
        limiter = self._limits.get(job.model) if self._limits is not None else None
        learner = None
        if self._learners is not None and limiter is not None:
            learner = self._learners.get(job.model, limiter, limiter.config.rpm)
        permit, reservation = await self._pass_gates(job, limiter)
        if learner is not None:
            learner.on_grant()
        try:
            result = await self._send(job)
        except ProviderError as error:
            outage = is_outage_like(error)
            kind = CallOutcome.OUTAGE if outage else CallOutcome.OTHER_FAILURE
            if self._breaker.record(permit, kind):
                error.during_outage = True
            _after_failure(limiter, reservation, error, learner)
            raise
        except BaseException:
            self._breaker.abandon(permit)
            if reservation is not None:
                reservation.settle(0)
            raise
        self._breaker.record(permit, CallOutcome.SUCCESS)
        _after_success(limiter, reservation, result, learner)
        return result

    async def _send(self, job: ClaimedJob) -> CallResult:
        """The transport call, under its adaptive deadline when there is one."""
        if self._deadlines is None:
            return await self._transport.call(job.payload, job.stage)
        return await call_within_deadline(
            self._deadlines,
            key_of(job.model, job.payload),
            lambda: self._transport.call(job.payload, job.stage),
        )


def _after_failure(
    limiter: RateLimiter | None,
    reservation: Reservation | None,
    error: ProviderError,
    learner: RateLearner | None,
) -> None:
    if reservation is not None:
        reservation.settle(0)  # a refused call used no tokens
    if learner is not None:
        if isinstance(error, RateLimited):
            granted_at = reservation.granted_at if reservation is not None else -math.inf
            learner.on_rate_limited(granted_at, error.retry_after_s)
    elif limiter is not None and isinstance(error, RateLimited):
        limiter.on_rate_limited(error.retry_after_s)


def _after_success(
    limiter: RateLimiter | None,
    reservation: Reservation | None,
    result: CallResult,
    learner: RateLearner | None,
) -> None:
    if limiter is None or reservation is None:
        return
    reservation.settle(result.prompt_tokens + result.completion_tokens)
    if learner is not None:
        learner.on_success()
        if result.ratelimit is not None:
            learner.observe_limit(result.ratelimit.limit_requests)
    else:
        limiter.on_success()
    if result.ratelimit is not None:
        h = result.ratelimit
        limiter.observe_headers(
            h.limit_requests,
            h.remaining_requests,
            h.reset_requests_s,
            h.limit_tokens,
            h.remaining_tokens,
            h.reset_tokens_s,
        )
