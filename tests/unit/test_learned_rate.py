"""The learned request rate on a fake clock, against a simulated token-bucket server."""

from __future__ import annotations

import heapq
from collections.abc import Callable

import pytest

from ratelimits.clock import FakeClock
from ratelimits.learned import LearnConfig, LearnerRegistry, Phase, RateLearner


class ServerBucket:
    """A server enforcing `limit(t)` RPM with a one-second token bucket (like the simulator)."""

    def __init__(self, limit: Callable[[float], float]) -> None:
        self._limit = limit
        self._level = limit(0.0) / 60.0
        self._at = 0.0

    def admit(self, now: float) -> bool:
        per_s = self._limit(now) / 60.0
        self._level = min(max(1.0, per_s), self._level + (now - self._at) * per_s)
        self._at = now
        if self._level >= 1.0:
            self._level -= 1.0
            return True
        return False


class Sink:
    def __init__(self) -> None:
        self.rpm: list[float] = []
        self.paused_until = 0.0
        self.clock: FakeClock | None = None

    def set_learned_rpm(self, rpm: float) -> None:
        self.rpm.append(rpm)

    def pause_for(self, seconds: float) -> None:
        assert self.clock is not None
        self.paused_until = max(self.paused_until, self.clock.now() + seconds)


class Trace:
    def __init__(self) -> None:
        self.answers: list[tuple[float, bool]] = []  # (time, admitted)
        self.rates: list[tuple[float, float]] = []  # (time, learned rpm)

    def accepted_rpm(self, start: float, end: float) -> float:
        ok = sum(1 for t, admitted in self.answers if start <= t < end and admitted)
        return ok * 60.0 / (end - start)

    def limited_share(self, start: float, end: float) -> float:
        window = [admitted for t, admitted in self.answers if start <= t < end]
        return window.count(False) / len(window)

    def rates_between(self, start: float, end: float) -> list[float]:
        return [rpm for t, rpm in self.rates if start <= t < end]


def drive(
    learner: RateLearner,
    clock: FakeClock,
    server: ServerBucket,
    until_s: float,
    latency_s: float = 0.05,
    sink: Sink | None = None,
) -> Trace:
    """Send at the learned rate (paced, honouring pauses); answers come `latency_s` later."""
    trace = Trace()
    answers: list[tuple[float, int, float, bool]] = []  # (due, order, granted_at, admitted)
    order = 0
    next_send = clock.now()
    while next_send < until_s:
        while answers and answers[0][0] <= next_send:
            due, _, granted_at, admitted = heapq.heappop(answers)
            clock.advance_to(due)
            trace.answers.append((due, admitted))
            if admitted:
                learner.on_success()
            else:
                learner.on_rate_limited(granted_at)
        clock.advance_to(next_send)
        if sink is not None and sink.paused_until > next_send:
            next_send = sink.paused_until
            continue
        learner.on_grant()
        trace.rates.append((next_send, learner.rate_rpm))
        heapq.heappush(answers, (next_send + latency_s, order, next_send, server.admit(next_send)))
        order += 1
        next_send += 60.0 / learner.rate_rpm
    return trace


def fresh(
    config: LearnConfig | None = None,
    *,
    start_rpm: float | None = None,
    ceiling_rpm: float | None = None,
) -> tuple[RateLearner, FakeClock]:
    clock = FakeClock()
    learner = RateLearner(
        config or LearnConfig(), clock, start_rpm=start_rpm, ceiling_rpm=ceiling_rpm
    )
    return learner, clock


def test_converges_on_the_limit_from_nothing_known() -> None:
    learner, clock = fresh()
    trace = drive(learner, clock, ServerBucket(lambda _t: 1200.0), until_s=180.0)
    assert trace.accepted_rpm(30.0, 180.0) >= 0.88 * 1200
    assert trace.limited_share(0.0, 180.0) <= 0.02
    assert trace.limited_share(30.0, 180.0) <= 0.01
    assert learner.phase is Phase.AVOIDANCE


def test_oscillation_stays_within_a_bound_once_converged() -> None:
    learner, clock = fresh()
    trace = drive(learner, clock, ServerBucket(lambda _t: 1200.0), until_s=300.0)
    rates = trace.rates_between(40.0, 300.0)
    assert min(rates) >= 0.65 * 1200
    assert max(rates) <= 1.3 * 1200
    # a cut every few seconds at most: not a collapse into a cut per 429
    assert learner.cuts <= 300 / 5


def test_recovers_when_the_limit_rises() -> None:
    learner, clock = fresh()
    trace = drive(learner, clock, ServerBucket(lambda t: 600.0 if t < 60 else 1200.0), 180.0)
    assert trace.accepted_rpm(30.0, 60.0) >= 0.85 * 600
    assert trace.accepted_rpm(120.0, 180.0) >= 0.85 * 1200


def test_follows_a_limit_that_falls() -> None:
    learner, clock = fresh(start_rpm=1200.0)
    trace = drive(learner, clock, ServerBucket(lambda t: 1200.0 if t < 30 else 300.0), 120.0)
    assert max(trace.rates_between(60.0, 120.0)) <= 1.3 * 300
    assert trace.limited_share(60.0, 120.0) <= 0.05


def test_a_burst_of_429s_from_calls_in_flight_cuts_once() -> None:
    learner, clock = fresh(start_rpm=1000.0)
    clock.advance(5.0)
    granted = [clock.now() - 0.5 + i * 0.01 for i in range(40)]  # all sent before the first 429
    cuts = [learner.on_rate_limited(at) for at in granted]
    assert cuts.count(True) == 1
    assert learner.rate_rpm == pytest.approx(850.0)
    assert learner.rate_limited == 40


def test_cuts_are_spaced_and_never_below_the_floor() -> None:
    config = LearnConfig(min_cut_interval_s=1.0, floor_share=0.7, window_s=1.0, sustain_s=2.0)
    learner, clock = fresh(config, start_rpm=600.0)
    for _ in range(20):  # two windows (sustain_s) of 10 successful calls: 600 rpm sustained
        learner.on_grant()
        learner.on_success()
        clock.advance(0.1)
    for _ in range(8):  # 429s keep coming from a server still full of our excess
        clock.advance(1.0)
        learner.on_rate_limited(clock.now())
    assert learner.rate_rpm == pytest.approx(0.7 * 600)
    assert learner.cuts == 3  # 510, 433.5, then the floor 420; the rest held
    for _ in range(8):  # past `memory_s` the floor is forgotten: a lower limit is followed
        clock.advance(1.0)
        learner.on_rate_limited(clock.now())
    assert learner.rate_rpm < 0.7 * 600


def test_an_unused_rate_does_not_grow() -> None:
    learner, clock = fresh(start_rpm=600.0)
    for _ in range(100):  # 1 call/s against 10/s allowed
        clock.advance(1.0)
        learner.on_grant()
        learner.on_success()
    assert learner.rate_rpm == 600.0


def test_a_rate_in_full_use_below_one_call_a_window_still_grows() -> None:
    # 300 rpm: the limiter spaces calls 0.2 s apart, and answers 2 s later fall in step with
    # them, so every other 0.1 s window is empty; that is pacing, not an idle spell
    learner, clock = fresh(start_rpm=300.0)
    trace = drive(learner, clock, ServerBucket(lambda _t: 1e9), until_s=60.0, latency_s=2.0)
    assert learner.rate_rpm >= 1.2 * 300.0
    assert trace.limited_share(0.0, 60.0) == 0.0


def test_with_rpm_given_it_starts_there_never_exceeds_it_and_still_backs_off() -> None:
    learner, clock = fresh(ceiling_rpm=900.0)
    assert learner.rate_rpm == 900.0
    trace = drive(learner, clock, ServerBucket(lambda _t: 600.0), until_s=120.0)
    assert max(trace.rates_between(0.0, 120.0)) <= 900.0
    assert max(trace.rates_between(30.0, 120.0)) <= 1.2 * 600
    assert trace.accepted_rpm(30.0, 120.0) >= 0.8 * 600


def test_the_servers_announced_limit_is_taken_at_once() -> None:
    learner, _ = fresh()
    learner.observe_limit(1500.0)
    assert learner.rate_rpm == 1500.0
    assert learner.phase is Phase.AVOIDANCE
    learner.observe_limit(None)
    assert learner.rate_rpm == 1500.0


def test_a_long_retry_after_pauses_the_sink_and_the_rate_is_pushed() -> None:
    clock = FakeClock()
    sink = Sink()
    sink.clock = clock
    learner = RateLearner(LearnConfig(), clock, sink, start_rpm=1000.0)
    assert sink.rpm == [1000.0]
    clock.advance(3.0)
    learner.on_rate_limited(clock.now(), retry_after_s=1.0)  # short: the refused call waits
    assert sink.paused_until == 0.0
    assert sink.rpm[-1] == pytest.approx(850.0)
    learner.on_rate_limited(clock.now(), retry_after_s=20.0)  # "not now": everyone waits
    assert sink.paused_until == pytest.approx(23.0)


def test_registry_starts_from_memory_capped_by_the_ceiling() -> None:
    clock = FakeClock()
    registry = LearnerRegistry(LearnConfig(), clock, start_rpm={"a": 2000.0, "b": 300.0})
    sink = Sink()
    assert registry.get("a", sink, 1000.0).rate_rpm == 1000.0
    assert registry.get("b", sink, None).rate_rpm == 300.0
    assert registry.get("c", sink, None).phase is Phase.SLOW_START
    assert [r.model for r in registry.snapshot()] == ["a", "b", "c"]


def test_slow_start_waits_for_answers_at_high_latency() -> None:
    learner, clock = fresh()
    trace = drive(learner, clock, ServerBucket(lambda _t: 1200.0), until_s=120.0, latency_s=0.5)
    assert trace.limited_share(0.0, 120.0) <= 0.05
    assert trace.accepted_rpm(10.0, 120.0) >= 0.85 * 1200


class RandomRefusals(ServerBucket):
    """No limit, but every 50th request refused (2 %, as the `faults` bench injects)."""

    def __init__(self) -> None:
        super().__init__(lambda _t: 1e9)
        self.seen = 0

    def admit(self, now: float) -> bool:
        self.seen += 1
        return self.seen % 50 != 0


def test_a_steady_share_of_random_429s_does_not_drive_the_rate_down() -> None:
    learner, clock = fresh(start_rpm=60_000.0)  # 1,000 calls a second
    drive(learner, clock, RandomRefusals(), until_s=30.0, latency_s=0.02)
    assert learner.rate_rpm >= 60_000.0
    assert learner.cuts == 0
