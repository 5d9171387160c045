"""Several worker processes on one PostgreSQL run: kill one, add one, export every job once."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests import pg
from tests.helpers import (
    ROOT,
    engine_cmd,
    engine_env,
    read_jsonl,
    request,
    run_engine,
    simulator,
    wait_until,
    write_lines,
)

CONCURRENCY = 16


def _done(url: str) -> int:
    try:
        value = pg.fetchval(url, "SELECT count(*) FROM jobs WHERE status = 'done'")
    except asyncpg.UndefinedTableError:  # the first worker has not created the schema yet
        return 0
    return int(value)


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


def _start(started: list[subprocess.Popen[str]], log: Path, *args: str) -> subprocess.Popen[str]:
    with log.open("w") as err:
        process = subprocess.Popen(
            engine_cmd(*args), cwd=ROOT, env=engine_env(), stdout=subprocess.PIPE,
            stderr=err, text=True,
        )  # fmt: skip
    started.append(process)
    return process


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_workers_one_killed_one_late(tmp_path: Path, pg_url: str) -> None:
    n = 20_000
    requests = write_lines(
        tmp_path / "requests.jsonl", [request(f"req-{i}", f"question {i}") for i in range(n)]
    )
    with simulator("--latency-ms", "20") as sim, _processes() as started:
        engine = (
            "--base-url", sim.base_url, "--concurrency", str(CONCURRENCY), "--lease-s", "3",
            "--no-progress",
        )  # fmt: skip
        first = _start(
            started, tmp_path / "w0.log", "generate", "--requests", str(requests),
            "--queue", pg_url, *engine,
        )  # fmt: skip
        wait_until(lambda: _done(pg_url) > 0, "the first worker's first results", 120)
        others = [
            _start(started, tmp_path / f"w{i}.log", "worker", "--queue", pg_url, *engine)
            for i in (1, 2, 3)
        ]
        wait_until(lambda: _done(pg_url) >= n // 4, "a quarter of the run", 300)
        victim = others[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        wait_until(lambda: _done(pg_url) >= n // 2, "half of the run", 300)
        mid = run_engine("export", "--queue", pg_url, "--run-dir", str(tmp_path / "mid"))
        assert mid.returncode == 0, mid.stderr
        late = _start(started, tmp_path / "w4.log", "worker", "--queue", pg_url, *engine)
        logs = [tmp_path / f"w{i}.log" for i in (0, 2, 3, 4)]
        for process, log in zip((first, others[1], others[2], late), logs, strict=True):
            out, _ = process.communicate(timeout=300)
            assert process.returncode == 0, f"{log.name}: {out}\n{log.read_text()[-4000:]}"
            assert "run complete: 20000 done, 0 failed" in out
        stats = sim.stats()

    assert victim.returncode == -signal.SIGKILL
    run_dir = tmp_path / "export"
    result = run_engine("export", "--queue", pg_url, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    ids = Counter(line["custom_id"] for line in read_jsonl(run_dir / "results.jsonl"))
    assert len(ids) == n
    assert set(ids.values()) == {1}
    assert read_jsonl(run_dir / "errors.jsonl") == []
    # the export taken while the workers ran: what had finished, each once
    early = Counter(line["custom_id"] for line in read_jsonl(tmp_path / "mid" / "results.jsonl"))
    assert n // 2 <= len(early) < n
    assert set(early.values()) == {1}
    # paid twice: only calls the killed worker had answered but not committed (it waits for
    # each commit before its next call: at most one per concurrency slot)
    assert stats["duplicate_completions"] <= CONCURRENCY
    jobs_done = pg.fetchval(pg_url, "SELECT sum(jobs_done) FROM workers")
    assert int(jobs_done) == n  # each job counted by the one worker that completed it
    late_done = pg.fetchval(
        pg_url, "SELECT jobs_done FROM workers ORDER BY started_at DESC LIMIT 1"
    )
    assert int(late_done) > 0  # the late worker joined the run and worked on it
    status = run_engine("status", "--queue", pg_url)
    assert status.returncode == 0
    assert "workers 5:" in status.stdout
    assert "silent" in status.stdout  # the killed one, without its heartbeat


def test_bad_queue_urls_exit_2_without_the_password(tmp_path: Path, pg_url: str) -> None:
    requests = write_lines(tmp_path / "r.jsonl", [request("a")])
    secret = "pw-never-shown"
    for url in (
        f"postgresql://nobody:{secret}@127.0.0.1:1/nowhere",  # no server there
        pg_url.replace("://", f"://x:{secret}@", 1).rsplit("/", 1)[0] + "/ptb_missing_db",
    ):
        result = run_engine("generate", "--requests", str(requests), "--queue", url)
        assert result.returncode == 2, result.stderr
        assert "cannot connect to the queue database" in result.stderr
        assert secret not in result.stdout + result.stderr
        worker = run_engine("worker", "--queue", url)
        assert worker.returncode == 2
        assert secret not in worker.stdout + worker.stderr
    not_pg = run_engine("worker", "--queue", str(tmp_path / "queue.sqlite"))
    assert not_pg.returncode == 2
    assert "PostgreSQL URL" in not_pg.stderr


def test_worker_on_a_database_without_a_run(pg_url: str) -> None:
    result = run_engine("worker", "--queue", pg_url)
    assert result.returncode == 2
    assert "no run in the database" in result.stderr
    assert "generate --queue" in result.stderr


def test_newer_schema_exit_2(pg_url: str) -> None:
    assert run_engine("status", "--queue", pg_url).returncode == 0  # creates the schema
    pg.admin_sql(pg_url, "UPDATE schema_info SET version = version + 1")
    result = run_engine("status", "--queue", pg_url)
    assert result.returncode == 2
    assert "newer than this engine" in result.stderr


def test_run_reused_with_different_requests(tmp_path: Path, pg_url: str) -> None:
    first = write_lines(tmp_path / "a.jsonl", [request(f"r{i}", f"q{i}") for i in range(5)])
    changed = [request(f"r{i}", f"q{i}") for i in range(5)] + [request("new", "q5")]
    changed[3] = request("r3", "another question")
    second = write_lines(tmp_path / "b.jsonl", changed)
    with simulator() as sim:
        ok = run_engine(
            "generate", "--requests", str(first), "--queue", pg_url, "--base-url", sim.base_url
        )
        assert ok.returncode == 0, ok.stderr
        again = run_engine(
            "generate", "--requests", str(first), "--queue", pg_url, "--base-url", sim.base_url
        )  # every host may run the same command: nothing new, nothing paid again
        assert again.returncode == 0, again.stderr
        assert sim.stats()["completions_served"] == 5
        bad = run_engine(
            "generate", "--requests", str(second), "--queue", pg_url, "--base-url", sim.base_url
        )
    assert bad.returncode == 2
    assert f"{second}:4" in bad.stderr
    assert "nothing was enqueued" in bad.stderr
    assert pg.fetchval(pg_url, "SELECT count(*) FROM jobs") == 5  # not even the new line


def _enqueue(url: str, path: Path) -> None:
    from engine.queue.postgres import PostgresQueue  # noqa: PLC0415
    from engine.requests import enqueue_file  # noqa: PLC0415

    async def enqueue() -> None:
        queue = await PostgresQueue.open(url)
        try:
            await enqueue_file(queue, path)
        finally:
            await queue.close()

    pg.run_sync(enqueue)


def _steady_rate(url: str) -> float:
    """Jobs per second between the 10th and the 90th percentile of finish times (the start,
    while workers join, and the tail are not the budget's steady state)."""
    sql = """
        SELECT (count(*) * 0.8) / (percentile_cont(0.9) WITHIN GROUP (ORDER BY finished_at)
               - percentile_cont(0.1) WITHIN GROUP (ORDER BY finished_at))
        FROM jobs WHERE status = 'done'
    """
    return float(pg.fetchval(url, sql))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_workers_share_one_budget(tmp_path: Path, pg_url: str) -> None:
    n, rpm = 8000, 12_000
    requests = write_lines(
        tmp_path / "requests.jsonl", [request(f"req-{i}", f"question {i}") for i in range(n)]
    )
    _enqueue(pg_url, requests)
    with simulator("--rpm", str(rpm), "--latency-ms", "20") as sim, _processes() as started:
        workers = [
            _start(
                started,
                tmp_path / f"w{i}.log",
                "worker",
                "--queue",
                pg_url,
                "--base-url",
                sim.base_url,
                "--rpm",
                str(rpm),
                "--concurrency",
                "32",
                "--no-progress",
            )
            for i in range(4)
        ]
        for process in workers:
            out, _ = process.communicate(timeout=300)
            assert process.returncode == 0, out
        stats = sim.stats()
    refused = stats["by_status"].get("429", 0)
    used = _steady_rate(pg_url) / (rpm / 60.0)
    print(f"budget used {used:.3f}, 429s {refused} of {stats['requests_received']}")
    assert refused < 0.01 * stats["requests_received"]
    assert used >= 0.95
    assert used <= 1.02  # the simulator enforces the budget: more would have been refused


def test_persona_run_with_two_workers_exports_the_same_pairs(tmp_path: Path, pg_url: str) -> None:
    """A pipeline with children: the worker rebuilds the PERSONA pipeline from the database
    (its name, records and graph configuration) and builds the critique and revise requests
    from parents another worker may have finished."""
    # 50 ms calls, 4 at a time: the run lasts seconds whatever the machine's speed, so the
    # second worker joins while jobs are left
    small = ("--personas", "20", "--prompts-per-persona", "10", "--concurrency", "4")
    with simulator("--latency-ms", "50") as sim, _processes() as started:
        alone = run_engine(
            "generate", *small, "--run-dir", str(tmp_path / "sqlite"), "--base-url", sim.base_url,
            "--export-format", "pairs",
        )  # fmt: skip
        assert alone.returncode == 0, alone.stderr
        common = ("--base-url", sim.base_url, "--no-cache", "--no-progress")
        first = _start(started, tmp_path / "g.log", "generate", *small, "--queue", pg_url, *common)
        wait_until(lambda: _done(pg_url) > 0, "the first results", 120)
        second = _start(started, tmp_path / "w.log", "worker", "--queue", pg_url, *common)
        for process in (first, second):
            out, _ = process.communicate(timeout=300)
            assert process.returncode == 0, out
    result = run_engine(
        "export", "--queue", pg_url, "--run-dir", str(tmp_path / "pg"), "--format", "pairs"
    )
    assert result.returncode == 0, result.stderr
    assert "200 pairs" in result.stdout

    def pairs(run_dir: Path) -> dict[tuple[str, str], tuple[str, str, str]]:
        return {
            (p["persona_id"], p["prompt_id"]): (p["rejected"], p["critique"], p["chosen"])
            for p in read_jsonl(run_dir / "pairs.jsonl")
        }

    assert len(pairs(tmp_path / "pg")) == 200
    assert pairs(tmp_path / "pg") == pairs(tmp_path / "sqlite")
    per_worker = pg.fetchval(pg_url, "SELECT count(*) FROM workers WHERE jobs_done > 0")
    assert per_worker == 2


def test_passwords_in_the_url_never_reach_output_or_logs(tmp_path: Path, pg_url: str) -> None:
    secret = "pw-kept-secret"  # trust authentication: the server accepts any password
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    assert secret in url
    requests = write_lines(tmp_path / "r.jsonl", [request(f"r{i}", f"q{i}") for i in range(3)])
    with simulator() as sim:
        runs = [
            run_engine("--log-level", "debug", "generate", "--requests", str(requests),
                       "--queue", url, "--base-url", sim.base_url, "--no-progress"),
            run_engine("worker", "--queue", url, "--base-url", sim.base_url),
            run_engine("status", "--queue", url),
            run_engine("status", "--queue", url, "--json"),
            run_engine("export", "--queue", url, "--run-dir", str(tmp_path / "out")),
        ]  # fmt: skip
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
    assert "postgres:***@" in runs[2].stdout
    for path in (tmp_path / "out").iterdir():
        assert secret not in path.read_text()
    assert secret not in str(pg.fetchval(pg_url, "SELECT string_agg(value, ' ') FROM meta"))


def test_a_worker_rides_out_lost_database_connections(tmp_path: Path, pg_url: str) -> None:
    """Every connection of the run's database is cut (as a server restart does) twice while a
    worker runs: it reconnects and finishes, each job once."""
    n = 3000
    requests = write_lines(tmp_path / "r.jsonl", [request(f"r{i}", f"q{i}") for i in range(n)])
    cut = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with simulator("--latency-ms", "20") as sim, _processes() as started:
        worker = _start(
            started, tmp_path / "w.log", "generate", "--requests", str(requests),
            "--queue", pg_url, "--base-url", sim.base_url, "--concurrency", "16", "--no-progress",
        )  # fmt: skip
        for at in (n // 4, n // 2):

            def reached(at: int = at) -> bool:
                return _done(pg_url) >= at or worker.poll() is not None  # a crash: fail below

            wait_until(reached, f"{at} jobs done", 120)
            assert int(pg.fetchval(pg_url, cut)) > 0
        out, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, (tmp_path / "w.log").read_text()[-3000:]
        assert f"run complete: {n} done, 0 failed" in out
        stats = sim.stats()
    # (whether the worker logs `queue.database_unreachable` depends on timing: a query in
    # flight when its connection is cut fails and is retried, while an idle connection cut
    # is replaced by the pool on its next acquire without an error; either way the cuts
    # landed, asserted above, and the worker went on past each of them to the end)
    assert stats["duplicate_completions"] <= 16
    export = run_engine("export", "--queue", pg_url, "--run-dir", str(tmp_path / "out"))
    ids = Counter(line["custom_id"] for line in read_jsonl(tmp_path / "out" / "results.jsonl"))
    assert export.returncode == 0
    assert len(ids) == n
    assert set(ids.values()) == {1}


def test_worker_takes_the_engine_flags_of_generate() -> None:
    worker = run_engine("worker", "--help")
    generate = run_engine("generate", "--help")
    assert worker.returncode == 0
    for flag in ("--base-url", "--rpm", "--tpm", "--max-attempts", "--lease-s", "--concurrency"):
        assert flag in worker.stdout
        assert flag in generate.stdout
    assert "(default: 64)" in worker.stdout  # --concurrency, from the same FLAGS table
    assert "--queue URL" in worker.stdout
    assert "--enqueue-only" in generate.stdout
    refused = run_engine("generate", "--requests", "x.jsonl", "--enqueue-only")
    assert refused.returncode == 2
    assert "--enqueue-only needs --queue" in refused.stderr


def test_batch_api_mode_takes_no_queue(tmp_path: Path, pg_url: str) -> None:
    requests = write_lines(tmp_path / "r.jsonl", [request("a")])
    result = run_engine(
        "generate", "--requests", str(requests), "--queue", pg_url, "--api", "batch"
    )
    assert result.returncode == 2
    assert "does not take --queue" in result.stderr


def test_retry_failed_on_a_shared_run(tmp_path: Path, pg_url: str) -> None:
    """Issue 16's --retry-failed with --queue: the failed jobs run again, on any worker."""
    lines = [request("good", "q1"), request("bad", "q2", model="no-such-model")]
    requests = write_lines(tmp_path / "r.jsonl", lines)
    flags = ("--queue", pg_url, "--no-progress", "--stop-after-same-errors", "0")
    with simulator("--model", "sim-small") as sim:
        first = run_engine("generate", "--requests", str(requests), "--base-url", sim.base_url,
                           *flags)  # fmt: skip
        assert first.returncode == 3, first.stderr  # the unknown model's job failed (404)
    with simulator() as sim:  # a server that has the model now
        again = run_engine("worker", "--retry-failed", "--base-url", sim.base_url, *flags)
    assert again.returncode == 0, again.stderr
    assert "retrying 1 failed jobs" in again.stdout
    assert "run complete: 2 done, 0 failed" in again.stdout
