"""Issue 15 end to end: a server enforcing an RPM with bare 429s, and no --rpm given.

The engine must finish every job (a 429 spends no attempt), keep the 429s a bounded share of
its calls, and record what it learned (the run's meta for `status`, rates.json beside the
cache for the next run). Nothing here depends on how fast the machine is: the assertions are
on counts, never on elapsed time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.learned_rates import load_rates, render_learned, save_rates
from engine.progress import learned_fields
from ratelimits.clock import FakeClock
from ratelimits.learned import LearnConfig, LearnedRate, LearnerRegistry
from tests.helpers import request, run_engine, simulator, write_lines


@pytest.mark.slow
def test_bare_429s_no_rpm_every_job_done_429s_bounded(tmp_path: Path, private_cache: Path) -> None:
    n = 240
    requests = write_lines(
        tmp_path / "in.jsonl", [request(f"r{i}", f"Is {i} fair?") for i in range(n)]
    )
    run_dir = tmp_path / "run"
    with simulator("--rpm", "1200", "--rpm-limit-mode", "bare") as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--max-attempts", "2",
        )  # fmt: skip
        stats = sim.stats()
        base_url = sim.base_url
    assert out.returncode == 0, out.stderr
    assert stats["by_status"]["200"] == n
    limited = stats["by_status"].get("429", 0)
    assert limited <= 0.10 * (n + limited)  # bounded, where it was 98.9 % before
    status = run_engine("status", "--run-dir", str(run_dir), "--json")
    report = json.loads(status.stdout)
    assert report["by_status"]["done"] == n
    assert report["by_status"]["failed"] == 0
    assert report["attempts"] == n  # the 429s spent none
    [learned] = report["rate_limits"]
    assert learned["model"] == "sim-small"
    assert learned["rate_limited"] == limited
    assert learned["requests"] == n + limited
    remembered = load_rates(private_cache.parent / "rates.json", base_url)
    assert remembered == {"sim-small": learned["rpm"]}
    text = run_engine("status", "--run-dir", str(run_dir)).stdout
    assert f"rate learned sim-small: {learned['rpm']:.0f} rpm; 429s {limited} of" in text


def test_rates_json_round_trip_per_endpoint_and_model(tmp_path: Path) -> None:
    path = tmp_path / "c" / "rates.json"
    save_rates(path, "http://Host:1/v1/", [LearnedRate("m", 900.0, 10, 1)])
    save_rates(path, "http://other/v1", [LearnedRate("m", 50.0, 10, 1)])
    save_rates(path, "http://host:1/v1", [LearnedRate("n", 10.0, 0, 0)])  # learned nothing
    assert load_rates(path, "http://host:1/v1") == {"m": 900.0}
    assert load_rates(path, "http://other/v1/") == {"m": 50.0}
    assert [p.name for p in path.parent.iterdir()] == ["rates.json"]  # no temporary left


def test_an_unreadable_rates_json_costs_a_relearn_not_the_run(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text("{not json")
    assert load_rates(path, "http://h/v1") == {}
    save_rates(path, "http://h/v1", [LearnedRate("m", 60.0, 1, 0)])
    assert load_rates(path, "http://h/v1") == {"m": 60.0}


def test_rates_json_keeps_no_password_and_knows_the_builtin_simulator(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    save_rates(path, "http://user:sk-secret@h:8/v1", [LearnedRate("m", 70.0, 1, 0)])
    save_rates(path, None, [LearnedRate("m", 80.0, 1, 0)])
    assert "sk-secret" not in path.read_text()
    assert load_rates(path, "http://h:8/v1") == {"m": 70.0}
    assert load_rates(path, None) == {"m": 80.0}


def test_progress_shows_the_learned_rate_and_the_429_share() -> None:
    clock = FakeClock()
    registry = LearnerRegistry(LearnConfig(), clock, start_rpm={"m": 900.0})
    assert learned_fields(None) == {}
    assert learned_fields(registry) == {"learned_rpm": None, "rate_limited_pct": 0.0}
    learner = registry.get("m", NullSink(), None)
    for _ in range(99):
        learner.on_success()
    learner.on_rate_limited(granted_at=-1.0)
    # one 429 among 100 answers is noise (tolerated_share 3 %): no cut
    assert learned_fields(registry) == {"learned_rpm": 900, "rate_limited_pct": 1.0}


def test_status_lines_say_rate_and_429s() -> None:
    lines = render_learned([LearnedRate("m", 1150.4, 2412, 12)])
    assert lines == ["  rate learned m: 1150 rpm; 429s 12 of 2412 answers (0.5 %) in the last run"]


class NullSink:
    def set_learned_rpm(self, rpm: float) -> None:
        pass

    def pause_for(self, seconds: float) -> None:
        pass
