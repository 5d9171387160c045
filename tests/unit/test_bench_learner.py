"""`bench.learner`: the learned rate driven against simulated token-bucket servers."""

from __future__ import annotations

import pytest

from bench.learner import TokenBucket, config_with, simulate
from ratelimits.learned import LearnConfig


def test_a_bucket_lets_its_burst_through_then_its_rate() -> None:
    bucket = TokenBucket(limit_rpm=600.0, burst_s=2.0)  # 10 a second, 20 at once
    assert sum(bucket.admit(0.0) for _ in range(25)) == 20
    assert sum(bucket.admit(1.0) for _ in range(25)) == 10
    tiny = TokenBucket(limit_rpm=60.0, burst_s=0.1)  # never less than one call
    assert tiny.admit(0.0)
    assert not tiny.admit(0.5)
    assert tiny.admit(1.5)


def test_with_no_limit_the_slow_start_ramps_to_full_speed_without_a_429() -> None:
    o = simulate(LearnConfig(), None, 0.0, 4.0, seconds=3.0, warmup_s=2.0, concurrency=64)
    assert o.limited == 0
    assert o.ramp_s is not None
    assert 0.9 <= o.ramp_s <= 1.1  # 600 -> 614,400 rpm, doubling every 0.1 s
    assert o.answered_early < 64 * 2.0 / 0.004  # the ramp costs calls against the ceiling
    assert o.utilisation > 0.95  # ... and is over after the warm-up: the concurrency binds


def test_the_concurrency_bounds_the_calls_in_flight() -> None:
    o = simulate(LearnConfig(), None, 0.0, 500.0, seconds=10.0, warmup_s=5.0, concurrency=4)
    assert o.answered <= 4 * 10.0 / 0.5
    assert o.utilisation == pytest.approx(1.0, abs=0.05)  # of 4 calls per 0.5 s


def test_against_the_simulators_bucket_the_limit_is_found() -> None:
    o = simulate(LearnConfig(), 1200.0, 1.0, 50.0, seconds=60.0, warmup_s=10.0, concurrency=64)
    assert o.share_429 <= 0.05
    assert 0.9 <= o.utilisation <= 1.05


def test_settings_are_laid_over_the_defaults_and_bad_ones_named() -> None:
    config = config_with(["window_s=0.05", "increase_windows=3"])
    assert (config.window_s, config.increase_windows, config.initial_rpm) == (0.05, 3, 600.0)
    with pytest.raises(ValueError, match="'nosuch' is not a LearnConfig field"):
        config_with(["nosuch=1"])
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        config_with(["window_s"])
    with pytest.raises(ValueError, match="window_s"):
        config_with(["window_s=0"])


def test_random_refusals_come_on_top_of_the_limit_and_are_the_same_each_run() -> None:
    floor = LearnConfig(min_rpm=6000.0)  # the learner backs off no lower: a large sample
    runs = [
        simulate(floor, None, 0.0, 20.0, seconds=20.0, warmup_s=5.0, concurrency=64, random_429=0.5)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]  # a seeded draw: the grid's figures do not move between runs
    assert runs[0].answered > 1000
    assert 0.45 <= runs[0].share_429 <= 0.55
    clean = simulate(floor, None, 0.0, 20.0, seconds=20.0, warmup_s=5.0, concurrency=64)
    assert clean.limited == 0
