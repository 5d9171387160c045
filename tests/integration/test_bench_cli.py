"""`python -m bench` as a user runs it: a tiny scenario end to end (real simulator and engine
subprocesses), the estimate, and --help on every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.latency_file import read_latency
from bench.report import report_decoder
from tests.helpers import ROOT, engine_env


def _bench(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_tiny_run_measures_every_variant_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _bench(
        "run", "custom", "--jobs", "200", "--concurrency", "8", "--latency-ms", "2",
        "--variants", "bare,engine,engine-sdk", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = report_decoder.decode((out / "report.json").read_bytes())
    assert [r.variant for r in report.runs] == ["bare", "engine", "engine-sdk"]
    for run in report.runs:
        assert (run.done, run.failed, run.duplicate_paid_calls) == (200, 0, 0)
        assert run.paid_calls == 200
        assert run.api_latency is not None
        assert run.api_latency.p50_ms >= 2.0  # the simulator's latency is a floor
        assert run.ceiling_per_s == 4000.0  # 8 in flight / 2 ms
        assert 0 < run.peak_rss_mb < 1000
        assert run.cpu_ms_per_job_net is not None
        assert 0 <= run.cpu_ms_per_job_net < run.cpu_ms_per_job
        assert run.cost_usd > run.batch_cost_usd > 0
        assert run.series
        assert max(p.jobs_per_s for p in run.series) > 0
    assert report.runs[0].rate_vs_bare == 1.0
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    latency = read_latency(out / "latency.json")  # what `bench plot` draws the CDFs from
    assert [(r.variant, r.api.count, len(r.api.ms)) for r in latency.runs] == [
        ("bare", 200, 200), ("engine", 200, 200), ("engine-sdk", 200, 200)
    ]  # fmt: skip
    assert "| engine-sdk | 8 | 200 | 0 |" in (out / "report.md").read_text()
    assert not (out / "requests.jsonl").exists()  # bulky files go unless --keep
    assert not (out / "c8-engine" / "run").exists()


def test_persona_scenario_counts_every_call(tmp_path: Path) -> None:
    """A PERSONA run writes results.jsonl only when asked (issue 11): the bench asks for it
    after the timed run, and counts every call of the run's job graph."""
    out = tmp_path / "out"
    done = _bench("run", "persona-full", "--jobs", "800", "--out", str(out))
    assert done.returncode == 0, done.stderr
    [run] = report_decoder.decode((out / "report.json").read_bytes()).runs
    assert run.done == run.paid_calls > 800 * 0.5
    assert (run.failed, run.duplicate_paid_calls) == (0, 0)
    assert run.api_latency is not None
    assert run.rate_per_s > 0


def test_floor_measures_the_cpu_of_each_side() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--calls", "300", "--personas", "2"],
        cwd=ROOT, env=engine_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    assert [r["client"] for r in rows] == ["bare", "engine --requests", "engine --personas 2"]
    assert [r["calls"] for r in rows[:2]] == [300, 300]
    assert rows[2]["calls"] > 2 * 2 * 100  # a critique and a revise per pair, and the answers
    for r in rows:
        assert r["calls_per_s"] > 0
        assert r["client_cpu_ms_per_call"] > 0
        assert r["sim_cpu_ms_per_call"] > 0
    assert "the full default run's 635,577 calls at the bare client's rate" in done.stdout


def test_outage_scenario_times_the_faulty_run_against_a_fault_free_twin(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _bench(
        "run", "outage", "--jobs", "300", "--concurrency", "8", "--latency-ms", "5",
        "--outage-for-s", "1", "--out", str(out),
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: a check not met (possible on 300 jobs)
    report = report_decoder.decode((out / "report.json").read_bytes())
    clean, faulty = report.runs
    assert (clean.variant, faulty.variant) == ("engine-fault-free", "engine")
    for run in report.runs:
        assert (run.done, run.failed, run.duplicate_paid_calls) == (300, 0, 0)
    assert clean.by_status.get("503", 0) == clean.retries == 0  # no faults for the twin
    assert faulty.by_status.get("503", 0) > 0  # 5 % 5xx and the outage
    assert faulty.retries > 0
    assert faulty.elapsed_s > 1.0 + clean.elapsed_s / 2  # the outage happened mid-run
    assert faulty.time_vs_fault_free == round((faulty.elapsed_s - 1.0) / clean.elapsed_s, 4)
    [check] = [c for c in report.checks if c.target == "time_vs_fault_free <= 1.1"]
    assert check.measured == faulty.time_vs_fault_free


def test_estimate_prints_calls_cost_and_wall_time() -> None:
    done = _bench("estimate", "--model", "gpt-4o", "--personas", "1586",
                  "--prompts-per-persona", "200", "--rpm", "10000")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert lines["answer"][1] == "3,868"
    assert lines["critique"][1] == lines["revise"][1] == "317,200"
    assert lines["total"][1] == "638,268"
    unknown = _bench("estimate", "--model", "gpt-9")
    assert unknown.returncode == 2
    assert "no price for model 'gpt-9'" in unknown.stderr


@pytest.mark.parametrize(
    "command", [(), ("run",), ("list",), ("estimate",), ("bare",), ("plot",), ("learner",)]
)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    done = _bench(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m bench")


def test_learner_grid_runs_and_takes_learn_config_settings() -> None:
    done = _bench("learner", "--seconds", "6", "--warmup-s", "1", "--json")
    assert done.returncode == 0, done.stderr
    grid = json.loads(done.stdout)
    outcomes = grid["outcomes"]
    assert len(outcomes) == 3 * 5 * 4 + 1  # bursts x limits x latencies, and no limit
    assert all(o["answered"] > 0 for o in outcomes)
    unlimited = outcomes[-1]
    assert unlimited["limit_rpm"] is None
    assert unlimited["limited"] == 0
    assert grid["config"]["window_s"] == 0.1
    faster = json.loads(
        _bench("learner", "--seconds", "6", "--set", "window_s=0.05", "--json").stdout
    )
    assert faster["config"]["window_s"] == 0.05
    assert faster["outcomes"][-1]["ramp_s"] < unlimited["ramp_s"]  # the setting took effect
    table = _bench("learner", "--seconds", "3", "--warmup-s", "1")
    assert table.returncode == 0, table.stderr
    assert "| 1 | 1,200 |" in table.stdout
    assert "no limit, 4 ms: 600,000 rpm after" in table.stdout
    noisy = _bench("learner", "--seconds", "3", "--warmup-s", "1", "--random-429", "0.02")
    assert noisy.returncode == 0, noisy.stderr
    assert "2.0% of calls refused at random" in noisy.stdout
    refusals = [
        (("--set", "nosuch=1"), "--set"),
        (("--set", "window_s=-1"), "--set"),
        (("--set", "window_s"), "--set"),
        (("--warmup-s", "40"), "--warmup-s"),
        (("--random-429", "1"), "--random-429"),
    ]
    for bad, flag in refusals:
        refused = _bench("learner", *bad)
        assert refused.returncode == 2
        assert refused.stderr.startswith(f"error: {flag}: "), refused.stderr
