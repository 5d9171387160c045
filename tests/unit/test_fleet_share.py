"""A fleet worker's part of the run's budget, and how `status` shows each worker."""

from __future__ import annotations

from engine.fleet_report import worker_status
from ratelimits.clock import FakeClock
from ratelimits.limiter import LimitConfig, LimiterRegistry, LimitsConfig, RateLimiter
from schemas.fleet import WorkerRow


def test_share_scales_both_budgets_and_comes_back() -> None:
    limiter = RateLimiter(LimitConfig(rpm=12_000, tpm=600_000), FakeClock())
    limiter.set_share(0.25)
    assert limiter.effective_rpm == 3000
    assert limiter.effective_tpm == 150_000
    limiter.set_share(1 / 3)  # a worker left
    assert limiter.effective_rpm == 4000
    limiter.set_share(1.0)
    assert limiter.effective_rpm == 12_000


def test_registry_applies_the_share_to_models_seen_later() -> None:
    registry = LimiterRegistry(LimitsConfig(default=LimitConfig(rpm=1200)), FakeClock())
    first = registry.get("a")
    registry.set_share(0.5)
    assert first.effective_rpm == 600
    assert registry.get("b").effective_rpm == 600  # built after the share was set


def test_unlimited_budgets_stay_unlimited() -> None:
    limiter = RateLimiter(LimitConfig(), FakeClock())
    limiter.set_share(0.5)
    assert limiter.effective_rpm is None
    assert limiter.effective_tpm is None


def _row(**changes: object) -> WorkerRow:
    values: dict[str, object] = {
        "id": "h:1:ab", "host": "h", "pid": 1, "concurrency": 8, "started_at": 100.0,
        "heartbeat_at": 150.0, "stopped_at": None, "jobs_done": 500,
    }  # fmt: skip
    values.update(changes)
    return WorkerRow(**values)  # type: ignore[arg-type]


def test_worker_states_and_rates() -> None:
    running = worker_status(_row(), now=151.0)
    assert (running.state, running.last_heartbeat_s_ago, running.rate_per_s) == (
        "running",
        1.0,
        10.0,
    )
    assert worker_status(_row(), now=160.0).state == "silent"  # dead, or cut off
    stopped = worker_status(_row(stopped_at=125.0), now=400.0)
    assert (stopped.state, stopped.rate_per_s) == ("stopped", 20.0)
