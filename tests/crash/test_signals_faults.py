"""Ctrl-C, hanging connections and a process killed during an outage, end to end."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.helpers import (
    engine_process,
    logged,
    read_jsonl,
    request,
    run_engine,
    simulator,
    wait_until,
    write_lines,
)


def _lines(n: int) -> list[dict[str, object]]:
    return [request(f"r{i}", f"question {i}?") for i in range(n)]


def _wait_for_lines(path: Path, n: int) -> None:
    wait_until(lambda: path.exists() and path.read_bytes().count(b"\n") >= n, f"{n} lines")


def test_sigint_stops_gracefully_and_the_same_command_resumes(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", _lines(2000))
    run_dir = tmp_path / "run"
    with simulator("--latency-ms", "200") as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                "--base-url", sim.base_url, "--concurrency", "32")  # fmt: skip
        with engine_process(tmp_path / "engine.log", *args) as process:
            _wait_for_lines(run_dir / "results.jsonl", 100)
            process.send_signal(signal.SIGINT)
            stdout, _ = process.communicate(timeout=30)
        assert process.returncode == 130, (tmp_path / "engine.log").read_text()
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
    log = tmp_path / "engine.log"
    outage = ("--outage-after-requests", "300", "--outage-for-s", "4")
    with simulator("--latency-ms", "20", *outage) as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                "--base-url", sim.base_url, "--concurrency", "16",
                "--max-attempts", "2")  # fmt: skip
        with engine_process(log, *args) as process:
            wait_until(lambda: logged(log, "breaker_opened"), "the breaker to open")
            assert process.poll() is None  # inside the outage
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
        # whole lines only: a kill in the middle of an append leaves a torn last line, which
        # the next run cuts back to the last commit (tests/unit/test_output_recovery.py)
        whole = (run_dir / "results.jsonl").read_bytes().split(b"\n")[:-1]
        assert all(json.loads(line)["custom_id"] for line in whole)
        assert len(whole) < 3000
        # the outage ends while nothing runs
        wait_until(lambda: sim.completion_status() == 200, "the outage to end")
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
    log = tmp_path / "engine.log"
    outage = ("--outage-after-requests", "100", "--outage-for-s", "120")
    with (
        simulator("--latency-ms", "20", *outage) as sim,
        engine_process(log, *common, "--base-url", sim.base_url) as process,
    ):
        # the breaker has opened: workers wait at it, nothing in flight but a probe
        wait_until(lambda: logged(log, "breaker_opened"), "the breaker to open")
        wait_until(lambda: sim.stats()["in_flight"] == 0, "no call in flight")
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
        stopped_after_s = time.monotonic() - signalled
    assert process.returncode == 130, log.read_text()
    # nothing was in flight, so nothing waited out the 60 s grace (nor the 120 s outage)
    assert stopped_after_s < 30, log.read_text()
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
