"""Dispatcher.stop_waiting: jobs waiting at the rate limiter or the breaker leave at once with
DispatchStoppedError, giving their place back; nothing is sent. Time is a FakeClock, so the
waits would never end by themselves."""

from __future__ import annotations

import asyncio
import random

import pytest

from ratelimits.breaker import BreakerConfig, CircuitBreaker
from ratelimits.breaker import Outcome as CallOutcome
from ratelimits.clock import FakeClock
from ratelimits.limiter import LimitConfig, LimiterRegistry, LimitsConfig
from schemas.job import ClaimedJob
from workers.client import AiohttpTransport
from workers.dispatch import Dispatcher, DispatchStoppedError
from workers.executor import RetryPolicy

# nothing listens here, and nothing may be sent: every job must stop at a gate
_UNREACHABLE = "http://127.0.0.1:9/v1"


def _job(seq: int) -> ClaimedJob:
    return ClaimedJob(seq, f"r{seq}", "request", 0, f"fp{seq}", b"{}", model="m", est_tokens=10)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _dispatcher(clock: FakeClock, limits: LimiterRegistry | None) -> Dispatcher:
    transport = AiohttpTransport(_UNREACHABLE, "key", concurrency=4, timeout_s=1.0)
    breaker = CircuitBreaker(BreakerConfig(), clock)
    return Dispatcher(transport, RetryPolicy(), breaker, limits, random.Random(0))


async def test_jobs_waiting_at_the_limiter_stop_at_once_and_give_their_place_back() -> None:
    clock = FakeClock(start=0.0)
    limits = LimiterRegistry(LimitsConfig(default=LimitConfig(rpm=60)), clock)
    dispatcher = _dispatcher(clock, limits)
    try:
        tasks = [asyncio.create_task(dispatcher.dispatch(_job(i))) for i in range(3)]
        await _settle()
        limiter = limits.get("m")
        assert limiter.waiting == 3  # a fresh bucket is empty: the first waits 1 s of fake time
        assert not any(task.done() for task in tasks)
        dispatcher.stop_waiting()
        dispatcher.stop_waiting()  # a second stop changes nothing
        await _settle()
        for task in tasks:
            with pytest.raises(DispatchStoppedError):
                task.result()
        assert limiter.waiting == 0
        assert clock.pending == 0  # no timer left for waiters that are gone
        with pytest.raises(DispatchStoppedError):  # and no new job passes the gates
            await dispatcher.dispatch(_job(9))
    finally:
        await dispatcher.close()


async def test_jobs_waiting_at_an_open_breaker_stop_at_once() -> None:
    clock = FakeClock(start=0.0)
    dispatcher = _dispatcher(clock, None)
    breaker = dispatcher.breaker
    try:
        for _ in range(8):  # an outage: the breaker opens
            breaker.record(await breaker.admit(), CallOutcome.OUTAGE)
        assert breaker.is_open
        tasks = [asyncio.create_task(dispatcher.dispatch(_job(i))) for i in range(3)]
        await _settle()
        assert not any(task.done() for task in tasks)
        dispatcher.stop_waiting()
        await _settle()
        for task in tasks:
            with pytest.raises(DispatchStoppedError):
                task.result()
        assert breaker.probes_sent == 0  # nobody was let through to call the API
    finally:
        await dispatcher.close()
