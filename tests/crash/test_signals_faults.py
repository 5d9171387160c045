"""Ctrl-C, hanging connections and a process killed during an outage, end to end."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import (
    ROOT,
    engine_cmd,
    engine_env,
    read_jsonl,
    request,
    run_engine,
    simulator,
    write_lines,
)


def _lines(n: int) -> list[dict[str, object]]:
    return [request(f"r{i}", f"question {i}?") for i in range(n)]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        engine_cmd(*args), cwd=ROOT, env=engine_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_for_lines(path: Path, n: int) -> None:
    _wait_until(lambda: path.exists() and path.read_bytes().count(b"\n") >= n, f"{n} lines")


def test_sigint_stops_gracefully_and_the_same_command_resumes(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", _lines(2000))
    run_dir = tmp_path / "run"
    with simulator("--latency-ms", "200") as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                "--base-url", sim.base_url, "--concurrency", "32")  # fmt: skip
        process = _start(*args)
        _wait_for_lines(run_dir / "results.jsonl", 100)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "run the same command to resume" in stdout
        served_at_stop = sim.stats()["completions_served"]
        status = run_engine("status", "--run-dir", str(run_dir), "--json")
        assert '"running":0' in status.stdout  # in-flight calls finished or went back
        finished = len(read_jsonl(run_dir / "results.jsonl"))
        assert finished == served_at_stop  # every answered call was committed: none paid twice
        resumed = run_engine(*args)
        assert resumed.returncode == 0, resumed.stderr
        assert sim.stats()["completions_served"] == 2000
    ids = [r["custom_id"] for r in read_jsonl(run_dir / "results.jsonl")]
    assert len(ids) == len(set(ids)) == 2000


def test_hanging_connections_time_out_and_are_retried(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", _lines(200))
    run_dir = tmp_path / "run"
    with simulator("--timeout-rate", "0.1", "--hang-s", "30", "--seed", "5") as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--timeout-s", "0.5", "--retry-base-s", "0.01",
            "--max-attempts", "10",
        )  # fmt: skip
        stats = sim.stats()
    assert out.returncode == 0, out.stderr
    results = read_jsonl(run_dir / "results.jsonl")
    assert len(results) == 200
    assert stats["requests_received"] > 200
    assert any(r["engine"]["attempts"] > 1 for r in results)


def test_killed_during_an_outage_resumes_later_with_nothing_lost(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", _lines(3000))
    run_dir = tmp_path / "run"
    outage = ("--outage-after-s", "1.5", "--outage-for-s", "4")
    with simulator("--latency-ms", "20", *outage) as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                "--base-url", sim.base_url, "--concurrency", "16",
                "--max-attempts", "2")  # fmt: skip
        process = _start(*args)
        time.sleep(3.0)  # inside the outage
        assert process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        during = len(read_jsonl(run_dir / "results.jsonl"))
        assert during < 3000
        time.sleep(3.0)  # the outage ends while nothing runs
        resumed = run_engine(*args)
        assert resumed.returncode == 0, resumed.stderr
    results = read_jsonl(run_dir / "results.jsonl")
    assert len({r["custom_id"] for r in results}) == len(results) == 3000
    assert not (run_dir / "errors.jsonl").read_text()  # nothing dead-lettered


def test_ctrl_c_during_an_outage_stops_at_once_and_spends_nothing(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", _lines(400))
    run_dir = tmp_path / "run"
    common = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
              "--concurrency", "64", "--grace-s", "60", "--max-attempts", "2")  # fmt: skip
    with simulator("--latency-ms", "20", "--outage-after-s", "0.5", "--outage-for-s", "120") as sim:
        process = _start(*common, "--base-url", sim.base_url)
        _wait_until(lambda: sim.stats()["by_status"].get("503", 0) >= 20, "20 x 503")
        # the breaker has opened: workers wait at it, nothing in flight
        time.sleep(0.5)
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        _stdout, stderr = process.communicate(timeout=60)
        stopped_after_s = time.monotonic() - signalled
    assert process.returncode == 130, stderr
    # nothing was in flight, so nothing waited out the 60 s grace (nor the 120 s outage)
    assert stopped_after_s < 8, stderr
    assert not (run_dir / "errors.jsonl").read_text()  # no attempt spent, nothing failed
    status = run_engine("status", "--run-dir", str(run_dir), "--json")
    assert '"running":0' in status.stdout
    before = len(read_jsonl(run_dir / "results.jsonl"))
    assert before < 400
    with simulator("--latency-ms", "20") as healthy:  # the API is back (a fresh simulator)
        resumed = run_engine(*common, "--base-url", healthy.base_url)
        assert resumed.returncode == 0, resumed.stderr
        assert healthy.stats()["completions_served"] == 400 - before
    results = read_jsonl(run_dir / "results.jsonl")
    assert len({r["custom_id"] for r in results}) == len(results) == 400
