"""A hung call is abandoned at its adaptive deadline and retried, long before --timeout-s."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, request, run_engine, simulator, write_lines

HANG_RATE = 0.01
SEED = 9  # hangs the 5th, 50th, 211th and 325th request to arrive (see _hung_among)
TIMEOUT_S = 60.0


def _hung_among(requests: int) -> int:
    """How many of the first `requests` arrivals the simulator hangs: its fault draws are one
    `random.Random(seed)` value per request in arrival order, a hang below the rate."""
    rng = random.Random(SEED)
    return sum(rng.random() < HANG_RATE for _ in range(requests))


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_hung_calls_are_abandoned_and_retried_well_before_the_timeout(
    tmp_path: Path, transport: str
) -> None:
    n = 300
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"{i}?") for i in range(n)])
    run_dir = tmp_path / "run"
    sim_args = ("--latency-ms", "5", "--timeout-rate", str(HANG_RATE), "--hang-s", "300")
    with simulator(*sim_args, "--seed", str(SEED)) as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--concurrency", "8", "--timeout-s", str(TIMEOUT_S),
            "--deadline-floor-s", "3", "--deadline-min-samples", "20", "--transport", transport,
        )  # fmt: skip
        received = sim.stats()["requests_received"]
    assert out.returncode == 0, out.stderr
    hung = _hung_among(received)
    assert hung >= 2  # the 5th request hung before any latency was known: abandoned all the same
    assert received == n + hung  # each hung call was retried once, nothing else was
    ids = [r["custom_id"] for r in read_jsonl(run_dir / "results.jsonl")]
    assert sorted(ids) == sorted(f"r{i}" for i in range(n))  # every job once
    status = run_engine("status", "--run-dir", str(run_dir), "--json")
    report = json.loads(status.stdout)
    assert report["abandoned_calls"] == hung
    assert report["by_status"]["done"] == n
    # with only the hard timeout the hung calls alone would hold the run for TIMEOUT_S
    assert report["elapsed_s"] < TIMEOUT_S
    assert f"{hung} calls abandoned" in out.stdout
