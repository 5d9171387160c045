"""RateLimiter, its registry and the clocks. Time moves only when a test advances a FakeClock."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence

import msgspec
import pytest

from ratelimits.clock import FakeClock, LoopClock
from ratelimits.limiter import (
    LimitConfig,
    LimiterRegistry,
    LimitsConfig,
    ModelLimits,
    RateLimiter,
    Reservation,
    ReservationSettledError,
    ResetFormatError,
    parse_reset,
)


async def run_ready() -> None:
    """Let the tasks that the last clock step woke run to their next await."""
    for _ in range(3):
        await asyncio.sleep(0)


def idle_limiter(config: LimitConfig, idle_s: float) -> tuple[FakeClock, RateLimiter]:
    """A limiter built at t = -idle_s and left idle until t = 0, when the test begins.

    Buckets start empty and refill while idle: idle_s = 0 is a fresh (empty) limiter.
    """
    clock = FakeClock(start=-idle_s)
    limiter = RateLimiter(config, clock)
    clock.advance_to(0.0)
    return clock, limiter


def full_limiter(config: LimitConfig) -> tuple[FakeClock, RateLimiter]:
    """A limiter idle for its burst (one second) is full: the steady state after a quiet spell."""
    return idle_limiter(config, config.burst_s)


def spawn(limiter: RateLimiter, weights: Sequence[int]) -> list[asyncio.Task[Reservation]]:
    return [asyncio.create_task(limiter.acquire(weight)) for weight in weights]


def granted(tasks: Sequence[asyncio.Task[Reservation]]) -> int:
    return sum(1 for task in tasks if task.done())


def max_in_window(times: Sequence[float], amounts: Sequence[float], window_s: float) -> float:
    """Largest total granted within any closed window [t, t + window_s] starting at a grant."""
    best = 0.0
    end = 0
    total = 0.0
    for start, start_time in enumerate(times):
        while end < len(times) and times[end] <= start_time + window_s + 1e-9:
            total += amounts[end]
            end += 1
        best = max(best, total)
        total -= amounts[start]
    return best


# -- the clocks ------------------------------------------------------------------------------


def test_fake_clock_runs_due_callbacks_in_order_at_their_own_time() -> None:
    clock = FakeClock(start=10.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(12.0, lambda: seen.append(("b", clock.now())))
    clock.call_at(11.0, lambda: seen.append(("a", clock.now())))
    cancelled = clock.call_at(11.5, lambda: seen.append(("x", clock.now())))
    clock.call_at(15.0, lambda: seen.append(("late", clock.now())))
    cancelled.cancel()
    assert clock.pending == 3
    assert clock.advance(2.0) == 2
    assert seen == [("a", 11.0), ("b", 12.0)]
    assert clock.now() == 12.0
    assert clock.next_deadline() == 15.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1.0)


async def test_loop_clock_reads_and_schedules_on_the_running_loop() -> None:
    loop = asyncio.get_running_loop()
    clock = LoopClock()
    assert abs(clock.now() - loop.time()) < 1.0
    fired: asyncio.Future[float] = loop.create_future()
    clock.call_at(clock.now(), lambda: fired.set_result(clock.now()))
    never = clock.call_at(clock.now() + 3600.0, lambda: fired.set_result(-1.0))
    never.cancel()
    assert await fired >= 0.0


def test_a_loop_clock_built_before_the_loop_schedules_on_the_loop_that_runs() -> None:
    clock = LoopClock()  # no loop yet

    async def fire() -> bool:
        fired: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        clock.call_at(clock.now(), lambda: fired.set_result(True))
        return await fired

    assert asyncio.run(fire())
    assert asyncio.run(fire())  # a second loop after the first closed


async def test_limiter_on_the_loop_clock_waits_for_the_refill() -> None:
    clock = LoopClock()
    started = clock.now()
    limiter = RateLimiter(LimitConfig(rpm=1200.0, burst_s=0.05), clock)  # 20/s, capacity 1
    reservations = await asyncio.gather(*spawn(limiter, [0, 0, 0]))
    # empty at start: the k-th call goes no sooner than k refills (50 ms each) after the build
    for k, reservation in enumerate(reservations, start=1):
        assert reservation.granted_at - started >= 0.05 * k - 1e-6
    assert 1 <= limiter.timers_scheduled <= 3
    assert not limiter.timer_pending


# -- budgets, FIFO, timers -------------------------------------------------------------------


@pytest.mark.parametrize("idle_s", [0.0, 1.0], ids=["fresh", "idle-full"])
async def test_500_mixed_waiters_never_exceed_either_budget_in_any_window(idle_s: float) -> None:
    rpm, tpm = 600.0, 60_000.0  # 10 requests/s (capacity 10), 1000 tokens/s (capacity 1000)
    clock, limiter = idle_limiter(LimitConfig(rpm=rpm, tpm=tpm), idle_s)
    rng = random.Random(5)
    weights = [rng.choice([1, 20, 60, 150, 400, 1500]) for _ in range(500)]
    order: list[int] = []
    tasks = [
        asyncio.create_task(_acquire_and_note(limiter, w, i, order)) for i, w in enumerate(weights)
    ]
    await run_ready()
    while granted(tasks) < len(tasks):
        assert clock.pending == 1  # one timer at a time, never a timer per waiter
        deadline = clock.next_deadline()
        assert deadline is not None
        clock.advance_to(deadline)
        await run_ready()
    times = [task.result().granted_at for task in tasks]
    assert order == list(range(500))  # first come, first served
    assert times == sorted(times)
    assert limiter.timers_scheduled <= 500
    for window_s in (1.0, 10.0, 60.0):
        requests = max_in_window(times, [1.0] * 500, window_s)
        assert requests <= rpm * window_s / 60 + 10 + 1e-6
        tokens = max_in_window(times, [float(w) for w in weights], window_s)
        assert tokens <= tpm * window_s / 60 + max(1000, *weights) + 1e-6
    # windows from the start hold only what the idle spell refilled, plus the rate; a call
    # dearer than the token capacity may overshoot by its excess (it waits for a full bucket)
    requests_at_start = min(10.0, rpm / 60 * idle_s)
    tokens_at_start = min(1000.0, tpm / 60 * idle_s)
    dear_excess = max(0, max(weights) - 1000)
    for window_s in (0.0, 0.5, 1.0, 10.0, 60.0):
        requests = sum(1.0 for t in times if t <= window_s)
        assert requests <= requests_at_start + rpm * window_s / 60 + 1e-6
        tokens = sum(float(w) for w, t in zip(weights, times, strict=True) if t <= window_s)
        assert tokens <= tokens_at_start + tpm * window_s / 60 + dear_excess + 1e-6
    # and it is not slow either: done by the time the binding budget allows (here, tokens)
    assert times[-1] <= max(sum(weights) / (tpm / 60), len(weights) / (rpm / 60)) + 1e-6


async def _acquire_and_note(
    limiter: RateLimiter, tokens: int, index: int, order: list[int]
) -> Reservation:
    reservation = await limiter.acquire(tokens)
    order.append(index)
    return reservation


_FRESH_TOKEN_WEIGHTS = [random.Random(3).randint(1, 100) for _ in range(60)]


@pytest.mark.parametrize(
    ("config", "weights", "limit_per_min"),
    [
        (LimitConfig(rpm=600.0), [0] * 60, 600.0),  # 10 requests/s, capacity 10
        (LimitConfig(tpm=6000.0), _FRESH_TOKEN_WEIGHTS, 6000.0),  # 100 tokens/s, capacity 100
    ],
    ids=["rpm", "tpm"],
)
async def test_a_fresh_limiter_starts_empty_no_burst_at_start(
    config: LimitConfig, weights: list[int], limit_per_min: float
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(config, clock)
    tasks = spawn(limiter, weights)
    await run_ready()
    assert granted(tasks) == 0  # nothing at t = 0: the buckets start empty
    costs = [1.0] * len(weights) if config.rpm is not None else [float(w) for w in weights]
    rate_per_s = limit_per_min / 60
    first_s = costs[0] / rate_per_s  # 1/rate for a request, estimate/rate for tokens
    assert clock.next_deadline() == pytest.approx(first_s, abs=1e-9)
    clock.advance_to(first_s * 0.999)
    await run_ready()
    assert granted(tasks) == 0
    clock.advance_to(first_s)
    await run_ready()
    assert granted(tasks) == 1
    assert tasks[0].result().granted_at == pytest.approx(first_s, abs=1e-9)
    while granted(tasks) < len(tasks):
        deadline = clock.next_deadline()
        assert deadline is not None
        clock.advance_to(deadline)
        await run_ready()
    times = [task.result().granted_at for task in tasks]
    # no burst at all: each call goes when the refill since t = 0 has paid for it and those before
    assert times == pytest.approx(list(itertools.accumulate(c / rate_per_s for c in costs)))
    assert times[-1] > 5.0
    for window_s in (0.0, 0.5, 1.0, 5.0):
        in_window = sum(c for c, t in zip(costs, times, strict=True) if t <= window_s)
        assert in_window <= limit_per_min * window_s / 60 + 1e-6


async def test_a_dear_call_on_a_fresh_limiter_waits_for_a_full_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitConfig(tpm=600.0), clock)  # 10 tokens/s, capacity 10
    (dear,) = spawn(limiter, [100])
    await run_ready()
    assert clock.next_deadline() == pytest.approx(1.0)  # capacity / rate, not 100 / rate
    clock.advance_to(1.0)
    await run_ready()
    assert dear.result().granted_at == pytest.approx(1.0)
    spawn(limiter, [1])
    await run_ready()
    assert clock.next_deadline() == pytest.approx(1.0 + 9.1)  # 90 of debt + 1 token at 10/s


async def test_head_waiter_is_woken_exactly_when_it_can_go_by_one_timer() -> None:
    clock, limiter = full_limiter(LimitConfig(rpm=60.0))  # one per second
    first = await limiter.acquire(0)
    assert first.granted_at == 0.0
    tasks = spawn(limiter, [0, 0, 0])
    await run_ready()
    assert clock.pending == 1
    assert clock.next_deadline() == pytest.approx(1.0)
    clock.advance_to(0.999)
    await run_ready()
    assert granted(tasks) == 0
    clock.advance_to(1.0)
    await run_ready()
    assert granted(tasks) == 1
    assert tasks[0].result().granted_at == pytest.approx(1.0)
    assert clock.pending == 1
    assert clock.next_deadline() == pytest.approx(2.0)
    clock.advance_to(3.0)
    await run_ready()
    assert [t.result().granted_at for t in tasks] == pytest.approx([1.0, 2.0, 3.0])
    assert clock.pending == 0
    assert clock.timers_scheduled == 3


async def test_big_waiter_at_the_head_holds_back_small_ones() -> None:
    clock, limiter = full_limiter(LimitConfig(tpm=6000.0))  # 100 tokens/s, capacity 100
    await limiter.acquire(100)
    big, small = spawn(limiter, [300, 1])
    await run_ready()
    clock.advance_to(0.5)  # 50 tokens: enough for `small`, but `big` is first
    await run_ready()
    assert not small.done()
    clock.advance_to(1.0)  # full bucket: `big` goes into debt (-200)
    await run_ready()
    assert big.result().granted_at == pytest.approx(1.0)
    assert not small.done()
    clock.advance_to(3.0)  # 200 of debt repaid at 100/s: still short of one token
    await run_ready()
    assert not small.done()
    assert clock.next_deadline() == pytest.approx(3.01)
    clock.advance_to(3.01)
    await run_ready()
    assert small.result().granted_at == pytest.approx(3.01)


async def test_call_dearer_than_capacity_passes_and_leaves_debt() -> None:
    clock, limiter = full_limiter(LimitConfig(tpm=600.0))  # 10 tokens/s, capacity 10
    dear = await limiter.acquire(100)
    assert dear.granted_at == 0.0
    spawn(limiter, [1])
    await run_ready()
    assert clock.next_deadline() == pytest.approx(9.1)  # 90 of debt + 1 token at 10/s


async def test_cancelled_head_is_removed_and_the_next_waiter_goes() -> None:
    clock, limiter = full_limiter(LimitConfig(tpm=6000.0))
    await limiter.acquire(100)
    big, small = spawn(limiter, [300, 10])
    await run_ready()
    clock.advance_to(0.5)
    big.cancel()
    await run_ready()
    assert big.cancelled()
    assert small.result().granted_at == pytest.approx(0.5)
    assert limiter.waiting == 0
    assert clock.pending == 0


async def test_waiter_cancelled_after_its_grant_gives_the_grant_back() -> None:
    clock, limiter = full_limiter(LimitConfig(rpm=60.0))
    await limiter.acquire(0)
    second, third = spawn(limiter, [0, 0])
    await run_ready()
    clock.advance_to(1.0)  # grants `second`, whose task has not run yet
    second.cancel()
    await run_ready()
    assert second.cancelled()
    assert third.result().granted_at == pytest.approx(1.0)  # took the returned request


async def test_settle_returns_unused_tokens_and_charges_excess() -> None:
    clock, limiter = full_limiter(LimitConfig(tpm=6000.0))  # 100 tokens/s, capacity 100
    reservation = await limiter.acquire(100)
    (waiting,) = spawn(limiter, [100])
    await run_ready()
    assert clock.next_deadline() == pytest.approx(1.0)
    reservation.settle(20)  # 80 back: 20 more needed, 0.2 s
    assert clock.next_deadline() == pytest.approx(0.2)
    assert clock.pending == 1
    clock.advance_to(0.2)
    await run_ready()
    assert waiting.result().granted_at == pytest.approx(0.2)
    waiting.result().settle(150)  # 50 more than reserved: debt
    spawn(limiter, [100])
    await run_ready()
    assert clock.next_deadline() == pytest.approx(0.2 + 1.5)
    with pytest.raises(ReservationSettledError):
        reservation.settle(20)


async def test_observe_headers_lowers_budget_but_never_raises_it() -> None:
    _, limiter = full_limiter(LimitConfig(rpm=600.0))  # capacity 10
    limiter.observe_headers(remaining_requests=2)
    tasks = spawn(limiter, [0] * 5)
    await run_ready()
    assert granted(tasks) == 2
    limiter.observe_headers(remaining_requests=1000, limit_requests=100_000)
    await run_ready()
    assert granted(tasks) == 2
    assert limiter.effective_rpm == 600.0
    limiter.observe_headers(limit_requests=60)
    assert limiter.effective_rpm == 60.0
    limiter.observe_headers(limit_requests=6000)
    assert limiter.effective_rpm == 600.0


async def test_reset_header_slows_refill_to_the_providers_pace() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitConfig(tpm=60_000.0), clock)  # 1000 tokens/s
    # a per-day style budget: 100,000 tokens, none left, full again in an hour
    limiter.observe_headers(limit_tokens=100_000, remaining_tokens=0, reset_tokens_s=3600.0)
    spawn(limiter, [100])
    await run_ready()
    assert clock.next_deadline() == pytest.approx(100 / (100_000 / 3600))


async def test_rate_limited_pauses_dispatch_then_recovers_gradually() -> None:
    clock = FakeClock()
    config = LimitConfig(rpm=600.0, adapt_interval_s=2.0, increase_step=0.05)
    limiter = RateLimiter(config, clock)
    limiter.on_rate_limited(5.0)
    assert limiter.rate_factor == pytest.approx(0.8)
    tasks = spawn(limiter, [0] * 12)
    await run_ready()
    assert granted(tasks) == 0
    assert clock.next_deadline() == pytest.approx(5.0)
    limiter.on_success()  # still paused: no recovery yet
    assert limiter.rate_factor == pytest.approx(0.8)
    clock.advance_to(5.0)
    await run_ready()
    assert granted(tasks) == 10  # the refilled bucket, no more
    assert clock.next_deadline() == pytest.approx(5.0 + 1 / (10 * 0.8))
    factors = []
    for step in range(6):
        clock.advance_to(6.0 + 2.0 * step)
        limiter.on_success()
        limiter.on_success()  # a second success in the same interval changes nothing
        factors.append(limiter.rate_factor)
    assert factors == pytest.approx([0.85, 0.9, 0.95, 1.0, 1.0, 1.0])


async def test_a_burst_of_429s_is_one_decrease_and_the_longest_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitConfig(rpm=600.0), clock)
    for retry_after_s in (1.0, 3.0, 2.0):
        limiter.on_rate_limited(retry_after_s)
    assert limiter.rate_factor == pytest.approx(0.8)
    assert limiter.paused_until == pytest.approx(3.0)


async def test_429_without_retry_after_backs_off_longer_each_time() -> None:
    clock = FakeClock()
    config = LimitConfig(rpm=600.0, pause_base_s=1.0, pause_jitter=0.0, adapt_interval_s=2.0)
    limiter = RateLimiter(config, clock, rng=random.Random(0))
    limiter.on_rate_limited(None)
    assert limiter.paused_until == pytest.approx(1.0)
    clock.advance_to(2.0)
    limiter.on_rate_limited(None)
    assert limiter.paused_until == pytest.approx(4.0)
    assert limiter.rate_factor == pytest.approx(0.64)
    clock.advance_to(5.0)
    limiter.on_success()  # a success ends the streak
    clock.advance_to(7.0)
    limiter.on_rate_limited(None)
    assert limiter.paused_until == pytest.approx(8.0)


async def test_negative_tokens_are_rejected() -> None:
    limiter = RateLimiter(LimitConfig(tpm=60.0), FakeClock())
    with pytest.raises(ValueError, match="negative"):
        await limiter.acquire(-1)


# -- parse_reset, config, registry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("120ms", 0.12),
        ("1.5s", 1.5),
        ("2m30.5s", 150.5),
        ("1h2m3s", 3723.0),
        ("0s", 0.0),
        ("0.5", 0.5),
        ("12", 12.0),
        (" 7s ", 7.0),
    ],
)
def test_parse_reset_reads_openai_formats(value: str, seconds: float) -> None:
    assert parse_reset(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "abc", "1x", "s", "1s2", "-1", "nan", "inf", "1 s"])
def test_parse_reset_rejects_nonsense(value: str) -> None:
    with pytest.raises(ResetFormatError) as caught:
        parse_reset(value)
    assert caught.value.value == value


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"default": {"rpm": 10, "rmp": 5}}, LimitsConfig)
    with pytest.raises(msgspec.ValidationError, match="rpm"):
        msgspec.convert({"default": {"rpm": 0}}, LimitsConfig)


async def test_registry_builds_one_limiter_per_model_from_default_and_overrides() -> None:
    config = msgspec.convert(
        {
            "default": {"rpm": 500, "tpm": 200_000, "burst_s": 2.0},
            "models": {"small": {"tpm": 1_000_000}, "local": {"rpm": None, "tpm": None}},
        },
        LimitsConfig,
    )
    assert config.models["small"] == ModelLimits(tpm=1_000_000)
    registry = LimiterRegistry(config, FakeClock())
    small = registry.get("small")
    assert registry.get("small") is small
    assert (small.config.rpm, small.config.tpm, small.config.burst_s) == (500, 1_000_000, 2.0)
    local = registry.get("local")
    assert (local.effective_rpm, local.effective_tpm) == (None, None)
    unlimited = [await local.acquire(10**9) for _ in range(1000)]  # never waits
    assert len(unlimited) == 1000
    other = registry.get("gpt-x")
    assert other.config == config.default
    assert registry.models() == ["small", "local", "gpt-x"]


# -- the learned rate steers the request bucket (issue 15) -------------------------------------


async def test_set_learned_rpm_paces_a_limiter_built_without_rpm() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitConfig(), clock)
    first = spawn(limiter, [0])
    await run_ready()
    assert granted(first) == 1  # no request budget: nothing waits
    limiter.set_learned_rpm(600.0)  # 10 a second, from an empty bucket
    tasks = spawn(limiter, [0] * 10)
    await run_ready()
    assert granted(tasks) == 0
    clock.advance(0.1)
    await run_ready()
    assert granted(tasks) == 1
    limiter.set_learned_rpm(60.0)  # waiters are re-timed at once: one a second now
    clock.advance(0.5)
    await run_ready()
    assert granted(tasks) == 1
    clock.advance(0.5)
    await run_ready()
    assert granted(tasks) == 2
    assert limiter.effective_rpm == 60.0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_pause_for_holds_every_waiter_until_it_ends() -> None:
    clock, limiter = full_limiter(LimitConfig(rpm=6000))
    limiter.pause_for(2.0)
    limiter.pause_for(1.0)  # a shorter pause does not cut the longer one short
    tasks = spawn(limiter, [0, 0])
    clock.advance(1.5)
    await run_ready()
    assert granted(tasks) == 0
    clock.advance(0.5)
    await run_ready()
    assert granted(tasks) == 2
