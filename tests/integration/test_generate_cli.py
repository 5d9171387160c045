"""`python -m engine generate/status/export` as a user runs them, against the real simulator."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, request, run_engine, simulator, write_lines


def test_generate_completes_every_job_once_and_resume_does_nothing(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"q {i}?") for i in range(300)])
    run_dir = tmp_path / "run"
    with simulator() as sim:
        args = ("generate", "--requests", str(requests), "--run-dir", str(run_dir))
        first = run_engine(*args, "--base-url", sim.base_url, "--concurrency", "16")
        assert first.returncode == 0, first.stderr
        results = read_jsonl(run_dir / "results.jsonl")
        assert sorted(r["custom_id"] for r in results) == sorted(f"r{i}" for i in range(300))
        for line in results:
            assert line["error"] is None
            assert line["response"]["status_code"] == 200
            assert line["response"]["body"]["choices"][0]["message"]["content"]
            assert line["engine"]["attempts"] == 1
        served = sim.stats()["completions_served"]
        assert served == 300
        again = run_engine(*args, "--base-url", sim.base_url)
        assert again.returncode == 0, again.stderr
        assert "already complete" in again.stdout
        assert sim.stats()["completions_served"] == served
    status = run_engine("status", "--run-dir", str(run_dir), "--json")
    report = json.loads(status.stdout)
    assert report["by_status"] == {
        "waiting": 0,
        "queued": 0,
        "running": 0,
        "done": 300,
        "failed": 0,
    }
    assert report["by_model"]["sim-small"]["cost_usd"] > 0
    assert report["prompt_tokens"] > 0
    assert report["completion_tokens"] > 0


def test_builtin_simulator_when_no_base_url(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}") for i in range(20)])
    out = run_engine("generate", "--requests", str(requests), "--run-dir", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("built-in simulator") == 1
    assert len(read_jsonl(tmp_path / "run" / "results.jsonl")) == 20


def test_permanent_failures_go_to_errors_and_exit_3(tmp_path: Path) -> None:
    lines = [request(f"ok{i}") for i in range(10)]
    lines += [request(f"bad{i}", model="no-such-model") for i in range(3)]
    requests = write_lines(tmp_path / "in.jsonl", lines)
    run_dir = tmp_path / "run"
    with simulator("--model", "sim-small") as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url,
        )  # fmt: skip
    assert out.returncode == 3, out.stderr
    assert len(read_jsonl(run_dir / "results.jsonl")) == 10
    errors = read_jsonl(run_dir / "errors.jsonl")
    assert sorted(e["custom_id"] for e in errors) == ["bad0", "bad1", "bad2"]
    for line in errors:
        assert line["error"]["code"] == "PermanentError"
        assert line["response"]["status_code"] == 404
        assert line["response"]["body"]["error"]["code"] == "model_not_found"
        assert line["engine"]["attempts"] == 1  # a permanent error is not retried


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_retryable_errors_are_retried_until_done(tmp_path: Path, transport: str) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"{i}?") for i in range(60)])
    run_dir = tmp_path / "run"
    with simulator("--error-rate", "0.3", "--malformed-rate", "0.1", "--seed", "3") as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--max-attempts", "30", "--transport", transport,
            "--retry-base-s", "0.01", "--retry-max-s", "0.05",
        )  # fmt: skip
        stats = sim.stats()
    assert out.returncode == 0, out.stderr
    results = read_jsonl(run_dir / "results.jsonl")
    assert len({r["custom_id"] for r in results}) == len(results) == 60
    attempts = sum(r["engine"]["attempts"] for r in results)
    assert attempts == stats["requests_received"] > 60
    assert stats["completions_served"] == 60
    assert all(r["response"]["request_id"].startswith("req_") for r in results)  # headers read


def test_attempts_run_out_and_the_reason_is_kept(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}") for i in range(5)])
    run_dir = tmp_path / "run"
    # malformed bodies: retryable, but neither an outage nor a rate limit (those spend nothing)
    with simulator("--malformed-rate", "1.0") as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--max-attempts", "3", "--retry-base-s", "0.01",
        )  # fmt: skip
        assert sim.stats()["requests_received"] == 15
    assert out.returncode == 3
    errors = read_jsonl(run_dir / "errors.jsonl")
    assert len(errors) == 5
    assert {e["response"]["status_code"] for e in errors} == {200}
    assert {e["engine"]["attempts"] for e in errors} == {3}


def test_429s_spend_no_attempt_and_the_give_up_ceiling_says_so(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}") for i in range(5)])
    run_dir = tmp_path / "run"
    with simulator("--rate-limit-rate", "1.0") as sim:  # the server never lets anything through
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--max-attempts", "2", "--rate-limit-give-up-s", "1",
        )  # fmt: skip
        received = sim.stats()["requests_received"]
    assert out.returncode == 3
    errors = read_jsonl(run_dir / "errors.jsonl")
    assert {e["error"]["code"] for e in errors} == {"RateLimitedTooLong"}
    assert all("never let this request through" in e["error"]["message"] for e in errors)
    assert {e["response"]["status_code"] for e in errors} == {429}
    assert len(errors) == 5
    assert received > 5 * 2  # more calls than --max-attempts allows: 429s spent none


def _queue_rows(run_dir: Path) -> int:
    db_path = run_dir / "queue.sqlite"
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


BAD_INPUTS = {
    "malformed": ('{"custom_id": "x", "body": ', "not a valid request line"),
    "missing_id": (json.dumps({"body": request("x")["body"]}), "custom_id"),
    "unknown_url": (json.dumps({**request("u"), "url": "/v1/embeddings"}), "unknown url"),
    "no_messages": (json.dumps({**request("m"), "body": {"model": "x"}}), "messages"),
    "duplicate": (json.dumps(request("r0", "another body")), "already used in line 1"),
}


def test_bad_input_names_file_and_line_and_enqueues_nothing(tmp_path: Path) -> None:
    for name, (bad_line, message) in BAD_INPUTS.items():
        good = [json.dumps(request(f"r{i}")) for i in range(2)]
        requests = write_lines(tmp_path / f"{name}.jsonl", [*good, bad_line])
        run_dir = tmp_path / name
        out = run_engine("generate", "--requests", str(requests), "--run-dir", str(run_dir))
        assert out.returncode == 2, (name, out.stderr)
        assert f"{requests}:3:" in out.stderr, (name, out.stderr)
        assert message in out.stderr, (name, out.stderr)
        assert _queue_rows(run_dir) == 0, name


def test_api_key_is_never_logged_stored_or_written(tmp_path: Path) -> None:
    secret = "sk-test-SECRET-0123456789abcdef"
    lines = [request(f"r{i}") for i in range(20)] + [request("bad", model="nope")]
    requests = write_lines(tmp_path / "in.jsonl", lines)
    run_dir = tmp_path / "run"
    with simulator("--model", "sim-small") as sim:
        out = run_engine(
            "--log-level", "debug", "generate", "--requests", str(requests),
            "--run-dir", str(run_dir), "--base-url", sim.base_url,
            env={"OPENAI_API_KEY": secret},
        )  # fmt: skip
    assert out.returncode == 3
    assert secret not in out.stdout + out.stderr
    for path in run_dir.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name


def test_export_rewrites_outputs_from_the_queue(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"{i}") for i in range(40)])
    run_dir = tmp_path / "run"
    assert (
        run_engine("generate", "--requests", str(requests), "--run-dir", str(run_dir)).returncode
        == 0
    )
    original = (run_dir / "results.jsonl").read_text().splitlines()
    (run_dir / "results.jsonl").write_text("garbage\n")
    out = run_engine("export", "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr
    rebuilt = (run_dir / "results.jsonl").read_text().splitlines()
    assert sorted(rebuilt) == sorted(original)


def test_sdk_transport(tmp_path: Path) -> None:
    lines = [request(f"r{i}", f"{i}") for i in range(30)] + [request("bad", model="nope")]
    requests = write_lines(tmp_path / "in.jsonl", lines)
    run_dir = tmp_path / "run"
    with simulator("--model", "sim-small") as sim:
        out = run_engine(
            "generate", "--requests", str(requests), "--run-dir", str(run_dir),
            "--base-url", sim.base_url, "--transport", "sdk",
        )  # fmt: skip
    assert out.returncode == 3, out.stderr
    assert len(read_jsonl(run_dir / "results.jsonl")) == 30
    [error] = read_jsonl(run_dir / "errors.jsonl")
    assert error["response"]["status_code"] == 404


@pytest.mark.parametrize("flag", ["--deadline-floor-s", "--deadline-p99-mult"])
@pytest.mark.parametrize("value", ["0", "nan"])
def test_deadline_flags_must_be_positive(flag: str, value: str) -> None:
    out = run_engine("generate", "--requests", "x.jsonl", flag, value)
    assert out.returncode == 2
    assert flag in out.stderr
