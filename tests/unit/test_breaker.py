"""CircuitBreaker: opening rules, one probe at growing intervals, closing. Time is a FakeClock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import structlog

from ratelimits.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Outcome,
    Permit,
    PermitUsedError,
)
from ratelimits.clock import FakeClock

OUTAGE, SUCCESS, OTHER = Outcome.OUTAGE, Outcome.SUCCESS, Outcome.OTHER_FAILURE


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (a helper, so mypy does not keep an earlier assert's narrowing)."""
    return breaker.state


async def run_ready() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def make() -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock(start=100.0)
    return CircuitBreaker(BreakerConfig(), clock), clock


async def feed(breaker: CircuitBreaker, outcomes: Sequence[Outcome]) -> list[bool]:
    """Run one admitted call per outcome; returns what `record` said for each."""
    return [breaker.record(await breaker.admit(), outcome) for outcome in outcomes]


async def open_breaker(breaker: CircuitBreaker) -> None:
    await feed(breaker, [OUTAGE] * 8)
    assert state(breaker) is BreakerState.OPEN


def admitters(breaker: CircuitBreaker, count: int) -> list[asyncio.Task[Permit]]:
    return [asyncio.create_task(breaker.admit()) for _ in range(count)]


async def test_scattered_failures_never_open_it() -> None:
    breaker, _ = make()
    said = await feed(breaker, [OUTAGE, OUTAGE, OUTAGE, OUTAGE, SUCCESS] * 40)
    said += await feed(breaker, [OTHER] * 100 + [OUTAGE] * 7 + [OTHER] + [OUTAGE] * 7)
    assert state(breaker) is BreakerState.CLOSED
    assert not any(said)  # every failure counts against its job
    assert breaker.opened_at is None


async def test_opens_after_consecutive_outage_failures() -> None:
    breaker, clock = make()
    assert await feed(breaker, [OUTAGE] * 7) == [False] * 7
    assert state(breaker) is BreakerState.CLOSED
    with structlog.testing.capture_logs() as logs:
        assert await feed(breaker, [OUTAGE]) == [True]
    assert state(breaker) is BreakerState.OPEN
    assert breaker.is_open
    assert breaker.opened_at == clock.now()
    assert [entry["event"] for entry in logs] == ["breaker_opened"]


async def test_opens_on_failure_ratio_in_the_window() -> None:
    breaker, _ = make()
    # 7 failures, a success, then failures: 9/10 is below min_failures, 10/11 opens it
    await feed(breaker, [OUTAGE] * 7 + [SUCCESS] + [OUTAGE] * 2)
    assert state(breaker) is BreakerState.CLOSED
    await feed(breaker, [OUTAGE])
    assert state(breaker) is BreakerState.OPEN


async def test_admit_blocks_while_open_and_lets_one_probe_through() -> None:
    breaker, clock = make()
    await open_breaker(breaker)
    tasks = admitters(breaker, 3)
    await run_ready()
    assert not any(task.done() for task in tasks)
    assert breaker.next_probe_at == pytest.approx(100.25)
    clock.advance_to(100.25)
    await run_ready()
    done = [task for task in tasks if task.done()]
    assert len(done) == 1
    assert done[0].result().is_probe
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.probes_sent == 1
    for task in tasks:
        task.cancel()
    await run_ready()


async def test_failed_probes_come_at_intervals_growing_with_the_outage() -> None:
    """Each wait is 2.5 % of the outage so far, between 0.25 s and 30 s: an hour-long outage
    is probed about 300 times, and a probe notices the API's return within 2.5 % of the outage
    (or 0.25 s)."""
    breaker, clock = make()
    await open_breaker(breaker)
    opened_at = breaker.opened_at
    assert opened_at is not None
    waiting = admitters(breaker, 2)
    intervals: list[float] = []
    while clock.now() - opened_at < 3600.0:
        due = breaker.next_probe_at
        assert due is not None
        lasted = clock.now() - opened_at
        intervals.append(due - clock.now())
        assert intervals[-1] == pytest.approx(min(30.0, max(0.25, 0.025 * lasted)))
        clock.advance_to(due - 0.001)
        await run_ready()
        assert not any(task.done() for task in waiting)
        clock.advance_to(due)
        await run_ready()
        (probe_task,) = [task for task in waiting if task.done()]
        waiting.remove(probe_task)
        assert breaker.record(probe_task.result(), OUTAGE) is True
        assert state(breaker) is BreakerState.OPEN
        waiting += admitters(breaker, 1)  # the probing dispatcher asks again
    assert intervals == sorted(intervals)  # growing
    assert intervals[:40] == [pytest.approx(0.25)] * 40  # the first 10 s
    assert intervals[-1] == pytest.approx(30.0)
    assert 250 <= len(intervals) <= 350
    assert breaker.opened_at == opened_at  # still the same outage
    assert breaker.failures_while_open == 1 + len(intervals)
    assert clock.pending == 1
    for task in waiting:
        task.cancel()
    await run_ready()


@pytest.mark.parametrize("answer", [SUCCESS, OTHER])
async def test_probe_answer_closes_it_and_releases_everyone(answer: Outcome) -> None:
    breaker, clock = make()
    await open_breaker(breaker)
    tasks = admitters(breaker, 4)
    closed = asyncio.create_task(breaker.wait_until_closed())
    clock.advance(0.25)
    await run_ready()
    (probe,) = [task.result() for task in tasks if task.done()]
    with structlog.testing.capture_logs() as logs:
        assert breaker.record(probe, answer) is False
    await run_ready()
    assert state(breaker) is BreakerState.CLOSED
    assert closed.done()
    assert all(task.done() for task in tasks)
    assert sum(task.result().is_probe for task in tasks) == 1
    assert breaker.opened_at is None
    assert clock.pending == 0
    assert logs[0]["event"] == "breaker_closed"
    assert logs[0]["outage_s"] == pytest.approx(0.25)
    # a fresh window: the outage's failures are forgotten, 7 more do not reopen it
    assert await feed(breaker, [OUTAGE] * 7) == [False] * 7
    assert state(breaker) is BreakerState.CLOSED


async def test_failures_of_calls_in_flight_during_an_outage_are_flagged() -> None:
    breaker, _ = make()
    in_flight = [await breaker.admit() for _ in range(5)]  # dispatched before the outage
    await open_breaker(breaker)
    assert [breaker.record(permit, OUTAGE) for permit in in_flight[:3]] == [True] * 3
    assert breaker.record(in_flight[3], OTHER) is False
    assert breaker.record(in_flight[4], SUCCESS) is False
    assert state(breaker) is BreakerState.OPEN  # only a probe decides
    assert breaker.failures_while_open == 1 + 3


async def test_cancelled_probe_passes_the_turn_to_the_next_waiter() -> None:
    breaker, clock = make()
    await open_breaker(breaker)
    first, second, third = admitters(breaker, 3)
    await run_ready()
    second.cancel()  # a waiter that leaves is simply removed
    clock.advance(0.25)  # the probe goes to `first`, whose task has not run yet
    first.cancel()
    await run_ready()
    assert first.cancelled()
    assert second.cancelled()
    assert third.result().is_probe
    breaker.abandon(third.result())  # never made the call: the turn is free again
    (fourth,) = admitters(breaker, 1)
    await run_ready()
    assert fourth.result().is_probe
    assert breaker.probes_sent == 3


async def test_a_permit_is_recorded_once() -> None:
    breaker, _ = make()
    permit = await breaker.admit()
    breaker.record(permit, SUCCESS)
    with pytest.raises(PermitUsedError):
        breaker.record(permit, SUCCESS)
    with pytest.raises(PermitUsedError):
        breaker.abandon(permit)
