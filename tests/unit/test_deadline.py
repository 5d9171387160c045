"""The adaptive deadline's pure logic: keys, the latency window, the deadline it gives."""

from __future__ import annotations

import json
import random

import pytest

from workers.deadline import (
    MIN_RECHECK_S,
    DeadlineConfig,
    Deadlines,
    LatencyWindow,
    deadlines_of,
    key_of,
    quantile,
    tokens_bucket,
)


def test_max_tokens_share_a_bucket_up_to_the_next_power_of_two() -> None:
    assert tokens_bucket(None) == 0
    assert tokens_bucket(0) == 0
    assert [tokens_bucket(n) for n in (1, 2, 3, 64, 65, 700, 1000, 1024)] == [
        1, 2, 4, 64, 128, 1024, 1024, 1024,
    ]  # fmt: skip


def test_the_key_is_the_model_and_the_cap_of_the_body() -> None:
    body = {"model": "m", "messages": [], "max_tokens": 300}
    assert key_of("m", json.dumps(body).encode()) == ("m", 512)
    body["max_completion_tokens"] = 2000  # the newer field wins
    assert key_of("m", json.dumps(body).encode()) == ("m", 2048)
    assert key_of("m", b'{"model": "m"}') == ("m", 0)
    assert key_of("m", b"not json") == ("m", 0)
    assert key_of("m", b'{"max_tokens": "many"}') == ("m", 0)


def test_quantile_is_the_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert quantile(values, 0.99) == 99.0
    assert quantile(values, 1.0) == 100.0
    assert quantile([5.0], 0.99) == 5.0
    assert quantile(values[:50], 0.99) == 50.0  # small samples: the maximum


def test_the_window_keeps_only_the_latest_latencies() -> None:
    window = LatencyWindow(size=100, recompute_every=1)
    for _ in range(100):
        window.add(10.0)
    assert window.p99() == 10.0
    for _ in range(100):
        window.add(1.0)  # the slow calls have all been replaced
    assert len(window) == 100
    assert window.p99() == 1.0


def test_the_p99_is_recomputed_every_few_samples_only() -> None:
    window = LatencyWindow(size=100, recompute_every=10)
    for _ in range(10):
        window.add(1.0)
    assert window.p99() == 1.0
    for _ in range(9):
        window.add(50.0)
    assert window.p99() == 1.0  # cached until the 10th new sample
    window.add(50.0)
    assert window.p99() == 50.0


def test_no_deadline_until_enough_samples_then_the_floor_or_the_multiple() -> None:
    deadlines = Deadlines(DeadlineConfig(floor_s=10.0, p99_mult=4.0, min_samples=50))
    key = ("m", 64)
    for _ in range(49):
        deadlines.observe(key, 0.02)
    assert deadlines.deadline_s(key) is None
    assert deadlines.check_after_s(key) == 10.0  # look again at the floor
    deadlines.observe(key, 0.02)
    assert deadlines.deadline_s(key) == 10.0  # 4 x 20 ms is under the floor
    slow = ("m", 4096)
    for _ in range(50):
        deadlines.observe(slow, 30.0)
    assert deadlines.deadline_s(slow) == pytest.approx(120.0)  # long generations keep theirs
    assert deadlines.deadline_s(key) == 10.0  # keys do not mix
    assert deadlines.deadline_s(("other", 64)) is None


def test_the_default_multiple_covers_a_lognormal_tail() -> None:
    rng = random.Random(1)
    config = DeadlineConfig(floor_s=0.0, window=512)
    deadlines = Deadlines(config)
    key = ("m", 64)
    for _ in range(512):
        deadlines.observe(key, rng.lognormvariate(0.0, 0.8))
    deadline = deadlines.deadline_s(key)
    assert deadline is not None
    beyond = sum(rng.lognormvariate(0.0, 0.8) > deadline for _ in range(100_000))
    assert beyond <= 10  # about 1 in 40,000 expected: abandoning is for hung calls only


def test_off_means_no_tracker() -> None:
    assert deadlines_of(DeadlineConfig(enabled=False)) is None
    assert isinstance(deadlines_of(DeadlineConfig()), Deadlines)


def test_an_unknown_deadline_is_looked_at_again_not_in_a_tight_loop() -> None:
    deadlines = Deadlines(DeadlineConfig(floor_s=0.0001))
    assert deadlines.deadline_s(("m", 0)) is None
    assert deadlines.check_after_s(("m", 0)) == MIN_RECHECK_S
