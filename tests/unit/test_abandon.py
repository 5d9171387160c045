"""A call under its adaptive deadline: abandoned past it, untouched within it, its latency kept."""

from __future__ import annotations

import asyncio

import pytest

from workers.abandon import call_within_deadline
from workers.client import CallResult
from workers.deadline import DeadlineConfig, Deadlines
from workers.errors import CallAbandoned, CallTimeout, RetryableError

KEY = ("sim-small", 64)


def _result(latency_ms: float = 1.0) -> CallResult:
    return CallResult(200, b"{}", "req", 1, 1, latency_ms)


def _deadlines(samples: int, floor_s: float = 0.05) -> Deadlines:
    deadlines = Deadlines(DeadlineConfig(floor_s=floor_s, min_samples=3))
    for _ in range(samples):
        deadlines.observe(KEY, 0.001)
    return deadlines


async def test_a_hung_call_is_abandoned_as_a_retryable_timeout() -> None:
    hung = asyncio.Event()
    cancelled = False

    async def hang() -> CallResult:
        nonlocal cancelled
        try:
            await hung.wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        return _result()

    with pytest.raises(CallAbandoned) as caught:
        await call_within_deadline(_deadlines(3), KEY, hang)
    assert isinstance(caught.value, CallTimeout)
    assert isinstance(caught.value, RetryableError)
    assert cancelled  # the call itself was cut off, not left running


async def test_a_call_begun_before_the_samples_is_abandoned_once_they_exist() -> None:
    deadlines = _deadlines(0)
    started = asyncio.Event()

    async def hang() -> CallResult:
        started.set()
        await asyncio.Event().wait()
        return _result()

    task = asyncio.create_task(call_within_deadline(deadlines, KEY, hang))
    await started.wait()
    assert deadlines.deadline_s(KEY) is None
    for _ in range(3):
        deadlines.observe(KEY, 0.001)  # calls like it complete meanwhile
    with pytest.raises(CallAbandoned):
        await task


async def test_a_completed_call_returns_and_joins_the_window() -> None:
    deadlines = _deadlines(2)

    async def answer() -> CallResult:
        return _result(latency_ms=4.0)

    assert (await call_within_deadline(deadlines, KEY, answer)).latency_ms == 4.0
    assert deadlines.deadline_s(KEY) == 0.05  # the third sample: a deadline now exists


async def test_other_errors_and_cancellation_pass_through() -> None:
    async def times_out() -> CallResult:
        raise CallTimeout("hard timeout")

    with pytest.raises(CallTimeout) as caught:
        await call_within_deadline(_deadlines(3, floor_s=60.0), KEY, times_out)
    assert not isinstance(caught.value, CallAbandoned)

    task = asyncio.create_task(
        call_within_deadline(_deadlines(3, floor_s=60.0), KEY, lambda: asyncio.sleep(60, _result()))
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_without_a_tracker_the_call_is_plain() -> None:
    async def answer() -> CallResult:
        return _result()

    assert (await call_within_deadline(None, KEY, answer)).status_code == 200
