"""SIGKILL `generate` at any instant; a rerun yields every custom_id exactly once.

Kill points are both deterministic (the engine kills itself at a named point: between the
API response and the commit, half-way through writing a batch of output lines, right after a
claim) and timed from outside at several stages of progress. Duplicate paid calls are read
from the simulator's own counters.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.crashpoints import ENV
from tests.helpers import ROOT, engine_cmd, engine_env, request, run_engine, simulator, write_lines

N_JOBS = 1500
CONCURRENCY = 32


def _requests(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"q{i}?") for i in range(N_JOBS)])


def _assert_exactly_once(run_dir: Path) -> None:
    raw = (run_dir / "results.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    ids = [json.loads(line)["custom_id"] for line in raw.splitlines()]  # no torn line
    assert len(ids) == len(set(ids)) == N_JOBS
    assert (run_dir / "errors.jsonl").read_bytes() == b""


@pytest.mark.parametrize(
    "point", ["after_append:3", "mid_append:4", "after_claim:5", "after_append:20"]
)
def test_crash_point_then_resume(tmp_path: Path, point: str) -> None:
    requests = _requests(tmp_path)
    run_dir = tmp_path / "run"
    with simulator("--latency-ms", "5") as sim:
        args = (
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--concurrency", str(CONCURRENCY),
        )  # fmt: skip
        crashed = run_engine(*args, env={ENV: point})
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        assert len((run_dir / "results.jsonl").read_bytes().splitlines()) < N_JOBS
        resumed = run_engine(*args)
        assert resumed.returncode == 0, resumed.stderr
        stats = sim.stats()
    _assert_exactly_once(run_dir)
    assert stats["unique_completions"] == N_JOBS
    # paid again: the calls in flight when the process died (the simulator still answers
    # them) and answered calls not yet committed; a worker takes no new job before its
    # outcome is committed, so together they are at most one per worker
    assert stats["duplicate_completions"] <= CONCURRENCY


def test_repeated_timed_kills_then_resume(tmp_path: Path) -> None:
    requests = _requests(tmp_path)
    run_dir = tmp_path / "run"
    results = run_dir / "results.jsonl"
    kills = 0
    with simulator("--latency-ms", "10") as sim:
        args = (
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--concurrency", str(CONCURRENCY),
        )  # fmt: skip
        for fraction in (0.1, 0.4, 0.7):
            process = subprocess.Popen(
                engine_cmd(*args), cwd=ROOT, env=engine_env(), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                lines = results.read_bytes().count(b"\n") if results.exists() else 0
                if lines >= fraction * N_JOBS:
                    break
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=10) == -signal.SIGKILL
            kills += 1
        final = run_engine(*args)
        assert final.returncode == 0, final.stderr
        stats = sim.stats()
    _assert_exactly_once(run_dir)
    assert stats["unique_completions"] == N_JOBS
    assert stats["duplicate_completions"] <= kills * CONCURRENCY  # at most one per worker
