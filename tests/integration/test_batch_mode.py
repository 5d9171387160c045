"""`generate --api batch` end to end: the real simulator's Batch API, real subprocesses, real
SQLite files, SIGKILLs at recorded events (engine.crashpoints), never at a time."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from engine.crashpoints import ENV
from tests.helpers import (
    Sim,
    engine_process,
    logged,
    read_jsonl,
    request,
    run_engine,
    simulator,
    wait_until,
    write_lines,
)

BATCH = ("--api", "batch", "--batch-poll-s", "0.01", "--batch-poll-max-s", "0.05", "--no-cache")
# the PERSONA run, with its pairs and a line per call as JSONL (the tests compare them)
SMALL = ("--personas", "20", "--prompts-per-persona", "10", "--export-format", "pairs,results")


def _requests(path: Path, n: int) -> Path:
    return write_lines(path, [request(f"r{i}", f"question {i}?") for i in range(n)])


def _generate(
    run_dir: Path, sim: Sim, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_engine(
        "generate", "--run-dir", str(run_dir), "--base-url", sim.base_url, *extra, env=env
    )


def _texts(path: Path) -> dict[str, str]:
    return {
        line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"]
        for line in read_jsonl(path)
    }


def _status(run_dir: Path) -> dict[str, Any]:
    out = run_engine("status", "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def _get(sim: Sim, path: str) -> Any:
    with urllib.request.urlopen(sim.base_url.removesuffix("/v1") + path, timeout=10) as resp:
        return json.load(resp)


def test_request_file_is_split_and_answered_as_online(tmp_path: Path) -> None:
    requests = _requests(tmp_path / "in.jsonl", 120)
    with simulator("--batch-polls", "2") as sim:
        out = _generate(
            tmp_path / "batch", sim, "--requests", str(requests), *BATCH,
            "--batch-max-requests", "50", "--batch-max-bytes", "20000",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        batch_stats = sim.stats()
        online = _generate(tmp_path / "online", sim, "--requests", str(requests), "--no-cache")
        assert online.returncode == 0, online.stderr
    assert batch_stats["requests_received"] == 0  # every call went through a batch
    assert batch_stats["batch_lines_received"] == batch_stats["batch_lines_served"] == 120
    # 120 lines of ~170 bytes: the 20,000-byte cap splits before the 50-request one does
    assert batch_stats["batches_created"] >= 3
    assert batch_stats["batch_max_submissions"] == 1
    assert _texts(tmp_path / "batch" / "results.jsonl") == _texts(
        tmp_path / "online" / "results.jsonl"
    )
    status = _status(tmp_path / "batch")
    assert status["batch"]["open"] == []
    assert status["batch"]["requests"] == 120
    assert status["batch"]["cost_usd"] == pytest.approx(
        status["batch"]["online_equivalent_usd"] / 2, abs=1e-6
    )
    assert status["cost_usd"] == pytest.approx(status["batch"]["cost_usd"], abs=1e-6)


def test_persona_run_in_batches_equals_the_online_run(tmp_path: Path) -> None:
    with simulator("--batch-polls", "2") as sim:
        out = _generate(tmp_path / "batch", sim, *SMALL, *BATCH)
        assert out.returncode == 0, out.stderr
        stats = sim.stats()
        online = _generate(tmp_path / "online", sim, *SMALL, "--no-cache")
        assert online.returncode == 0, online.stderr
    assert stats["requests_received"] == 0
    assert stats["batch_lines_served"] == stats["batch_lines_received"]
    assert stats["batch_max_submissions"] == 1
    assert _status(tmp_path / "batch")["batch"]["waves"] == 3  # answer, critique, revise

    def pairs(run: str) -> list[tuple[str, str, str, str, str]]:
        rows = read_jsonl(tmp_path / run / "pairs.jsonl")
        return sorted(
            (p["persona_id"], p["prompt_id"], p["rejected"], p["critique"], p["chosen"])
            for p in rows
        )

    assert len(pairs("batch")) == 200
    assert pairs("batch") == pairs("online")


def test_persona_run_sigkilled_with_batches_open_resumes_without_resubmitting(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    with simulator("--batch-polls", "3") as sim:
        # killed the moment the second wave's batch id is recorded: the first wave's results
        # are committed, the second wave's batch is open at the provider
        killed = _generate(run_dir, sim, *SMALL, *BATCH, env={ENV: "batch_submitted:2"})
        assert killed.returncode == -signal.SIGKILL
        [open_batch] = _status(run_dir)["batch"]["open"]
        assert open_batch["batch_id"]
        assert open_batch["requests"] == 200  # the critiques
        text = run_engine("status", "--run-dir", str(run_dir)).stdout
        assert f"{open_batch['key']} {open_batch['batch_id']} validating: 200 requests" in text
        assert "1 open" in text
        resumed = _generate(run_dir, sim, *SMALL, *BATCH)
        assert resumed.returncode == 0, resumed.stderr
        stats = sim.stats()
    assert stats["batch_max_submissions"] == 1
    assert stats["batch_lines_resubmitted"] == 0
    assert stats["requests_received"] == 0
    assert len(read_jsonl(run_dir / "pairs.jsonl")) == 200
    ids = [r["custom_id"] for r in read_jsonl(run_dir / "results.jsonl")]
    assert len(ids) == len(set(ids)) == stats["batch_lines_served"]


@pytest.mark.parametrize(
    "point",
    [
        "batch_prepared:1",  # members recorded, nothing uploaded: jobs back to the queue
        "batch_uploaded:1",  # file id recorded, no batch created: created on resume
        "batch_created:1",  # created at the provider, its id not recorded: found by file id
        "batch_collected:1",  # results downloaded, not committed: downloaded again
    ],
)
def test_sigkill_at_each_step_loses_nothing_and_submits_nothing_twice(
    tmp_path: Path, point: str
) -> None:
    requests = _requests(tmp_path / "in.jsonl", 60)
    run_dir = tmp_path / "run"
    args = ("--requests", str(requests), *BATCH, "--batch-max-requests", "25")
    with simulator() as sim:
        killed = _generate(run_dir, sim, *args, env={ENV: point})
        assert killed.returncode == -signal.SIGKILL
        resumed = _generate(run_dir, sim, *args)
        assert resumed.returncode == 0, resumed.stderr
        stats = sim.stats()
    assert stats["batch_max_submissions"] == 1
    assert stats["batch_lines_served"] == 60
    ids = [r["custom_id"] for r in read_jsonl(run_dir / "results.jsonl")]
    assert sorted(ids) == sorted(f"r{i}" for i in range(60))


def test_faults_every_job_ends_once(tmp_path: Path) -> None:
    requests = _requests(tmp_path / "in.jsonl", 300)
    run_dir = tmp_path / "run"
    faults = (
        "--batch-line-error-rate", "0.05", "--batch-line-permanent-rate", "0.02",
        "--batch-expire", "2", "--batch-fail-validation", "3", "--batch-finalizing-polls", "2",
    )  # fmt: skip
    with simulator(*faults) as sim:
        out = _generate(
            run_dir, sim, "--requests", str(requests), *BATCH, "--batch-max-requests", "60",
            "--retry-base-s", "0.01",
        )  # fmt: skip
        stats = sim.stats()
    assert out.returncode == 3, out.stderr  # some injected 400s failed for good
    results = read_jsonl(run_dir / "results.jsonl")
    errors = read_jsonl(run_dir / "errors.jsonl")
    ids = [r["custom_id"] for r in results + errors]
    assert sorted(ids) == sorted(f"r{i}" for i in range(300))  # every job, once
    assert errors
    assert {e["response"]["status_code"] for e in errors} == {400}
    assert {e["error"]["code"] for e in errors} == {"PermanentError"}  # failed at once
    # each 200 line became exactly one result: nothing was answered twice
    assert stats["batch_lines_served"] == len(results)
    assert stats["batch_lines_resubmitted"] > 0  # the expired, refused and 500 lines
    with sqlite3.connect(run_dir / "queue.sqlite") as db:
        states = {r[0] for r in db.execute("SELECT row ->> '$.provider_status' FROM batches")}
    assert {"completed", "expired", "failed"} <= states


def test_provider_without_batch_api_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    requests = _requests(tmp_path / "in.jsonl", 10)
    run_dir = tmp_path / "run"
    with simulator("--no-batch-api") as sim:
        out = _generate(run_dir, sim, "--requests", str(requests), *BATCH)
        assert out.returncode == 2
        assert sim.base_url in out.stderr
        assert "no Batch API" in out.stderr
        status = _status(run_dir)
        assert status["by_status"]["queued"] == 10
        online = _generate(run_dir, sim, "--requests", str(requests), "--no-cache")
    assert online.returncode == 0, online.stderr
    assert len(read_jsonl(run_dir / "results.jsonl")) == 10


def test_batch_cancel_keeps_what_was_delivered(tmp_path: Path) -> None:
    requests = _requests(tmp_path / "in.jsonl", 30)
    run_dir = tmp_path / "run"
    args = ("--requests", str(requests), *BATCH)
    with simulator("--batch-polls", "3") as sim:
        killed = _generate(run_dir, sim, *args, env={ENV: "batch_submitted:1"})
        assert killed.returncode == -signal.SIGKILL
        [batch] = _get(sim, "/v1/batches")["data"]
        for _ in range(2):  # two polls: with the engine's next, 2 of its 3 thirds are run
            _get(sim, f"/v1/batches/{batch['id']}")
        cancelled = _generate(run_dir, sim, *args, "--batch-cancel")
        assert cancelled.returncode == 130, cancelled.stderr
        assert "cancelled 1 open batches" in cancelled.stdout
        status = _status(run_dir)
        assert status["batch"]["open"] == []
        assert status["by_status"]["done"] == 20
        assert status["by_status"]["queued"] == 10
        resumed = _generate(run_dir, sim, *args)
        assert resumed.returncode == 0, resumed.stderr
        stats = sim.stats()
    assert stats["batch_lines_served"] == 30  # the 20 delivered were not asked again
    assert stats["batch_lines_received"] == 40
    assert len(read_jsonl(run_dir / "results.jsonl")) == 30


def test_limits_of_the_batch_pool_are_waited_for(tmp_path: Path) -> None:
    requests = _requests(tmp_path / "in.jsonl", 60)  # about 26 estimated tokens each
    run_dir = tmp_path / "run"
    with simulator("--batch-polls", "2") as sim:
        out = _generate(
            run_dir, sim, "--requests", str(requests), *BATCH,
            "--batch-max-enqueued-tokens", "300", "--batch-max-open", "2",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        stats = sim.stats()
    with sqlite3.connect(run_dir / "queue.sqlite") as db:
        held = [r[0] for r in db.execute("SELECT row ->> '$.est_tokens' FROM batches")]
    assert len(held) >= 6  # 60 requests under a 300-token cap
    assert max(held) <= 300
    assert stats["batch_max_open"] <= 2
    assert stats["batch_lines_served"] == 60
    assert stats["batch_max_submissions"] == 1


def test_ctrl_c_leaves_batches_open_and_twice_cancels_them(tmp_path: Path) -> None:
    requests = _requests(tmp_path / "in.jsonl", 20)
    run_dir = tmp_path / "run"
    args = ("generate", "--run-dir", str(run_dir), "--requests", str(requests), *BATCH)
    with simulator("--batch-polls", "1000000") as sim:  # its batches never finish by themselves
        log = tmp_path / "once.log"
        with engine_process(log, *args, "--base-url", sim.base_url, "--grace-s", "0.2") as proc:
            wait_until(lambda: logged(log, "batch.submitted"), "a batch submitted")
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert "1 batches still open" in out
        assert len(_status(run_dir)["batch"]["open"]) == 1
        log = tmp_path / "twice.log"
        with engine_process(log, *args, "--base-url", sim.base_url) as proc:
            wait_until(lambda: logged(log, "batch.resumed"), "the open batch resumed")
            proc.send_signal(signal.SIGINT)
            wait_until(lambda: "stopping" in log.read_text(), "the first signal taken")
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert "cancelled 1 open batches" in out
        stats = sim.stats()
    status = _status(run_dir)
    assert status["batch"]["open"] == []
    assert status["by_status"]["queued"] == 20  # nothing delivered, nothing lost
    assert stats["batches_created"] == 1
    assert stats["batch_max_submissions"] == 1
