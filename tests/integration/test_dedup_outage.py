"""Pay once (the cache and in-flight coalescing) and survive outages, end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.helpers import read_jsonl, request, run_engine, simulator, write_lines


def _lines_with_duplicates(n: int, distinct: int) -> list[dict[str, Any]]:
    """n requests with distinct bodies among them; the rest repeat earlier bodies."""
    return [request(f"r{i}", f"question {i % distinct}?") for i in range(n)]


def _generate(requests: Path, run_dir: Path, base_url: str, *extra: str) -> None:
    out = run_engine(
        "generate", "--requests", str(requests), "--run-dir", str(run_dir),
        "--base-url", base_url, "--concurrency", "32", *extra,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_duplicates_are_paid_once_and_the_cache_outlives_the_run(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", _lines_with_duplicates(1000, 700))
    with simulator("--latency-ms", "20") as sim:
        _generate(requests, tmp_path / "run1", sim.base_url)
        assert sim.stats()["completions_served"] == 700
        assert sim.stats()["duplicate_completions"] == 0
        _generate(requests, tmp_path / "run2", sim.base_url)  # a new run, same cache
        assert sim.stats()["completions_served"] == 700
    first = read_jsonl(tmp_path / "run1" / "results.jsonl")
    assert len({r["custom_id"] for r in first}) == 1000
    assert sum(r["engine"]["cached"] is True for r in first if "cached" in r["engine"]) == 300
    texts: dict[str, str] = {}
    for r in first:  # identical requests got the identical answer
        key = f"question {int(r['custom_id'][1:]) % 700}?"
        answer = r["response"]["body"]["choices"][0]["message"]["content"]
        assert texts.setdefault(key, answer) == answer
    second = read_jsonl(tmp_path / "run2" / "results.jsonl")
    assert all(r["engine"].get("cached") for r in second)


def test_one_parameter_changed_recomputes_only_what_it_changes(tmp_path: Path) -> None:
    lines = [request(f"r{i}", f"question {i}?") for i in range(200)]
    changed = [request(f"r{i}", f"question {i}?") for i in range(200)]
    for line in changed[:50]:
        line["body"]["temperature"] = 0.2
    with simulator() as sim:
        _generate(write_lines(tmp_path / "a.jsonl", lines), tmp_path / "a", sim.base_url)
        _generate(write_lines(tmp_path / "b.jsonl", changed), tmp_path / "b", sim.base_url)
        assert sim.stats()["completions_served"] == 250


def test_no_cache_pays_for_every_request(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", _lines_with_duplicates(100, 10))
    with simulator() as sim:
        _generate(requests, tmp_path / "run", sim.base_url, "--no-cache")
        assert sim.stats()["completions_served"] == 100
    assert not any(
        r["engine"].get("cached") for r in read_jsonl(tmp_path / "run" / "results.jsonl")
    )


def test_an_outage_pauses_dispatch_and_spends_no_attempts(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"{i}?") for i in range(400)])
    run_dir = tmp_path / "run"
    # the outage begins at the 100th request, wherever that falls in time
    outage = ("--outage-after-requests", "100", "--outage-for-s", "3")
    with simulator("--latency-ms", "10", *outage) as sim:
        started = time.monotonic()
        _generate(requests, run_dir, sim.base_url, "--max-attempts", "2")
        elapsed = time.monotonic() - started
        stats = sim.stats()
    results = read_jsonl(run_dir / "results.jsonl")
    assert len({r["custom_id"] for r in results}) == 400  # nothing dead-lettered
    assert not (run_dir / "errors.jsonl").read_text()
    assert stats["by_status"].get("503", 0) > 0  # the outage did happen during the run
    assert elapsed > 3.0  # the run waited the outage out
    # while the breaker was open only probes went out: far fewer 503s than jobs x attempts
    assert stats["by_status"]["503"] < 100, stats
