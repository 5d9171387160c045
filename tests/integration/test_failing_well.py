"""Failing well (issue 16), as a user meets it: a wrong key stops the run with nothing marked
failed; failed jobs run again with --retry-failed; filtered replies are not retried blindly.
Against the real simulator over loopback, the engine as a subprocess."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.helpers import read_jsonl, request, run_engine, simulator, write_lines


def ids_of(path: Path) -> Counter[str]:
    return Counter(line["custom_id"] for line in read_jsonl(path))


def status_json(run_dir: Path) -> dict[str, Any]:
    out = run_engine("status", "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def refused_request(custom_id: str) -> dict[str, Any]:
    """A request the server answers 400 every time (a response_format it does not know)."""
    line = request(custom_id, f"{custom_id}?")
    line["body"]["response_format"] = {"type": "yaml"}
    return line


def test_a_wrong_key_stops_the_run_and_the_right_key_completes_it(tmp_path: Path) -> None:
    n = 2000
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"q {i}?") for i in range(n)])
    run_dir = tmp_path / "run"
    with simulator("--api-key", "sk-right-key") as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                "--base-url", sim.base_url, "--concurrency", "64")  # fmt: skip
        wrong = run_engine(*args, env={"OPENAI_API_KEY": "sk-wrong-key"})
        assert wrong.returncode == 4, wrong.stdout + wrong.stderr
        assert "Traceback" not in wrong.stderr
        said = [line for line in wrong.stdout.splitlines() if line.startswith("stopped:")]
        assert len(said) == 1, wrong.stdout
        for part in ("HTTP 401 invalid_api_key", sim.base_url, "OPENAI_API_KEY", "nothing was"):
            assert part in said[0]
        assert "sk-wrong-key" not in wrong.stdout + wrong.stderr  # a key is never logged
        # stopped after 10 rejections (the default), plus the calls already in flight
        sent = sim.stats()["requests_received"]
        assert 10 <= sent <= 10 + 64
        report = status_json(run_dir)
        assert report["by_status"]["failed"] == 0
        assert report["by_status"]["queued"] == n
        assert report["attempts"] == 0
        assert not read_jsonl(run_dir / "errors.jsonl")

        right = run_engine(*args, env={"OPENAI_API_KEY": "sk-right-key"})
        assert right.returncode == 0, right.stdout + right.stderr
    assert ids_of(run_dir / "results.jsonl") == Counter(f"r{i}" for i in range(n))
    assert not read_jsonl(run_dir / "errors.jsonl")
    assert status_json(run_dir)["by_status"]["done"] == n


def test_always_400_fails_them_and_retry_failed_sends_exactly_those(tmp_path: Path) -> None:
    # good requests first (more than the concurrency): the server has answered this stage and
    # model before any bad one is sent, so the 400s are those requests' own (not systematic)
    lines = [request(f"ok{i}", f"q {i}?") for i in range(75)]
    lines += [refused_request(f"bad{i}") for i in range(25)]
    requests = write_lines(tmp_path / "in.jsonl", lines)
    run_dir = tmp_path / "run"
    bad = Counter(f"bad{i}" for i in range(25))
    with simulator() as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                "--base-url", sim.base_url, "--concurrency", "16")  # fmt: skip
        first = run_engine(*args)
        assert first.returncode == 3, first.stdout + first.stderr
        assert ids_of(run_dir / "errors.jsonl") == bad
        assert sim.stats()["by_status"] == {"200": 75, "400": 25}
        report = status_json(run_dir)
        assert report["by_status"]["failed"] == 25
        hint = report["retry_failed"]
        assert hint["jobs"] == 25
        assert hint["command"].endswith("--retry-failed")
        assert "--requests" in hint["command"]
        assert sim.base_url in hint["command"]
        text = run_engine("status", "--run-dir", str(run_dir)).stdout
        assert "25 failed jobs; to run them again:" in text

        none = run_engine(*args, "--retry-failed=404,invalid_api_key")
        assert none.returncode == 3
        assert "retrying 0 failed jobs" in none.stdout
        assert sim.stats()["requests_received"] == 100

        again = run_engine(*args, "--retry-failed=400")
        assert again.returncode == 3, again.stdout + again.stderr
        assert "retrying 25 failed jobs" in again.stdout
        stats = sim.stats()
    assert stats["requests_received"] == 125  # exactly the 25 again
    assert stats["by_status"] == {"200": 75, "400": 50}
    errors = read_jsonl(run_dir / "errors.jsonl")
    assert Counter(e["custom_id"] for e in errors) == bad  # once each, not twice
    assert all(e["engine"]["attempts"] == 1 for e in errors)  # fresh attempts
    assert ids_of(run_dir / "results.jsonl") == Counter(f"ok{i}" for i in range(75))


def test_a_retried_job_that_succeeds_leaves_errors_jsonl(tmp_path: Path) -> None:
    lines = [request(f"ok{i}", f"q {i}?") for i in range(20)]
    lines += [request(f"big{i}", f"b {i}?", model="sim-large") for i in range(3)]
    requests = write_lines(tmp_path / "in.jsonl", lines)
    run_dir = tmp_path / "run"
    args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir))
    with simulator("--model", "sim-small") as sim:
        first = run_engine(*args, "--base-url", sim.base_url)
    assert first.returncode == 3, first.stdout + first.stderr
    assert ids_of(run_dir / "errors.jsonl") == Counter(f"big{i}" for i in range(3))
    with simulator("--model", "sim-small", "--model", "sim-large") as sim:
        again = run_engine(*args, "--base-url", sim.base_url, "--retry-failed=model_not_found")
        assert sim.stats()["requests_received"] == 3
    assert again.returncode == 0, again.stdout + again.stderr
    assert not read_jsonl(run_dir / "errors.jsonl")
    everyone = Counter([f"ok{i}" for i in range(20)] + [f"big{i}" for i in range(3)])
    assert ids_of(run_dir / "results.jsonl") == everyone
    assert status_json(run_dir)["retry_failed"] is None


def test_filtered_replies_fail_at_once_with_their_reason(tmp_path: Path) -> None:
    n = 200
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"q {i}?") for i in range(n)])
    run_dir = tmp_path / "run"
    with simulator("--content-filter-rate", "0.2", "--seed", "3") as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url,
        )  # fmt: skip
        received = sim.stats()["requests_received"]
    assert out.returncode == 3, out.stdout + out.stderr
    assert received == n  # none sent twice
    errors = read_jsonl(run_dir / "errors.jsonl")
    assert 10 < len(errors) < 70  # about a fifth
    for line in errors:
        assert line["error"]["code"] == "ContentRefused"
        assert "content_filter" in line["error"]["message"]
        assert line["engine"]["attempts"] == 1
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["choices"][0]["finish_reason"] == "content_filter"
    results = ids_of(run_dir / "results.jsonl")
    assert len(results) + len(errors) == n
    assert not results.keys() & {e["custom_id"] for e in errors}


def test_a_mistyped_revise_model_stops_at_the_revisions_keeping_the_answers(
    tmp_path: Path,
) -> None:
    persona = ("generate", "--personas", "2", "--prompts-per-persona", "10")
    with simulator("--model", "sim-small") as sim:
        typo = run_engine(
            *persona, "--revise-model", "sim-smal", "--run-dir", str(tmp_path / "typo"),
            "--base-url", sim.base_url,
        )  # fmt: skip
        assert typo.returncode == 4, typo.stdout + typo.stderr
        said = [line for line in typo.stdout.splitlines() if line.startswith("stopped:")]
        assert len(said) == 1
        assert "stage revise (model sim-smal)" in said[0]
        assert "HTTP 404 model_not_found" in said[0]
        report = status_json(tmp_path / "typo")
        assert report["by_stage"]["answer"] == {"done": 20}
        assert report["by_stage"]["critique"] == {"done": 20}
        assert report["by_status"]["failed"] == 0
        assert sim.stats()["by_stage"] == {"answer": 20, "critique": 20}

        fixed = run_engine(
            *persona, "--revise-model", "sim-small", "--run-dir", str(tmp_path / "fixed"),
            "--base-url", sim.base_url,
        )  # fmt: skip
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        # the answers and critiques came from the cache: only the revisions were paid
        assert sim.stats()["by_stage"] == {"answer": 20, "critique": 20, "revise": 20}


def test_a_run_of_only_rejected_requests_stops_unless_told_to_fail_them(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [refused_request(f"bad{i}") for i in range(25)])
    run_dir = tmp_path / "run"
    bad = Counter(f"bad{i}" for i in range(25))
    with simulator() as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                "--base-url", sim.base_url, "--concurrency", "32")  # fmt: skip
        stopped = run_engine(*args)  # every call rejected alike, none succeeds: systematic
        assert stopped.returncode == 4, stopped.stdout + stopped.stderr
        said = [line for line in stopped.stdout.splitlines() if line.startswith("stopped:")]
        assert len(said) == 1
        assert "HTTP 400 invalid_value" in said[0]
        assert "--stop-after-same-errors 0" in said[0]
        assert status_json(run_dir)["by_status"]["failed"] == 0

        failed = run_engine(*args, "--stop-after-same-errors", "0")
        assert failed.returncode == 3, failed.stdout + failed.stderr
        assert ids_of(run_dir / "errors.jsonl") == bad
        before = sim.stats()["requests_received"]

        again = run_engine(*args, "--stop-after-same-errors", "0", "--retry-failed")
        assert again.returncode == 3, again.stdout + again.stderr
        assert sim.stats()["requests_received"] - before == 25  # exactly those 25
    assert ids_of(run_dir / "errors.jsonl") == bad
    assert status_json(run_dir)["by_status"]["failed"] == 25
