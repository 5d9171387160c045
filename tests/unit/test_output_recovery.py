"""OutputFiles.recover: after a crash, results.jsonl / errors.jsonl match the queue exactly.

The writer's steps are replayed by hand (append the lines, then commit the outcomes with the
sizes `append` returns), so a crash can be placed between any two of them. Run against both
queue backends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from engine.inputs import canonical_body, fingerprint
from engine.output import ERRORS, RESULTS, OutputFiles, row_of
from engine.prices import Price
from engine.queue import WorkQueue
from engine.queue.memory import MemoryQueue
from engine.queue.sqlite import SQLiteQueue
from schemas.job import ClaimedJob, Done, ErrorInfo, Failed, NewJob, Outcome, Retry
from tests.fakes import completion

#: the on-disk flag a rebuild sets while it runs (engine/output.py)
REBUILD_PENDING = "output.rebuild_pending"
PRICES = {"m": Price(input_per_mtok=1.0, output_per_mtok=2.0)}


@pytest.fixture(params=["memory", "sqlite"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WorkQueue]:
    q: WorkQueue
    if request.param == "sqlite":
        q = await SQLiteQueue.open(tmp_path / "queue.sqlite")
    else:
        q = MemoryQueue()
    yield q
    await q.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def new_job(i: int) -> NewJob:
    payload = canonical_body({"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]})
    return NewJob(f"job-{i}", fingerprint(payload), payload, model="m", line=i + 1)


async def claim_all(queue: WorkQueue, n: int) -> list[ClaimedJob]:
    await queue.enqueue([new_job(i) for i in range(n)])
    return await queue.claim(n, now=100.0, lease_s=1e6)


def ok(job: ClaimedJob, cached: bool = False) -> Done:
    at = 100.0 + job.seq
    body = completion(f"answer {job.id}")
    return Done(
        seq=job.seq,
        job_id=job.id,
        fingerprint=job.fingerprint,
        attempts=job.attempts + 1,
        body=body,
        status_code=200,
        request_id=f"req-{job.id}",
        prompt_tokens=7,
        completion_tokens=11,
        latency_ms=12.5,
        started_at=at,
        finished_at=at + 0.25,
        first_started_at=job.first_started_at or at,
        cached=cached,
        model=job.model,
    )


def failed(job: ClaimedJob) -> Failed:
    at = 100.0 + job.seq
    error = ErrorInfo("PermanentError", "HTTP 400", 400, '{"error": {"message": "no"}}')
    first = job.first_started_at or at
    return Failed(job.seq, job.id, job.attempts + 1, error, at, at + 0.5, first, f"req-{job.id}")


async def finish(queue: WorkQueue, output: OutputFiles, outcomes: Sequence[Outcome]) -> None:
    """What the coordinator's writer does with one batch: append, then commit."""
    meta = output.append([row_of(o) for o in outcomes if isinstance(o, Done | Failed)])
    await queue.commit(outcomes, meta)


def ids(path: Path) -> list[str]:
    """The custom_ids of a file's lines (every line must be whole JSON)."""
    return [json.loads(line)["custom_id"] for line in path.read_bytes().splitlines()]


async def recovered(queue: WorkQueue, run_dir: Path) -> OutputFiles:
    output = OutputFiles(run_dir, prices=PRICES)
    await output.recover(queue)
    return output


async def sizes_recorded(queue: WorkQueue) -> dict[str, int]:
    return {n: int(await queue.get_meta(f"output.{n}.bytes") or -1) for n in (RESULTS, ERRORS)}


async def test_a_torn_uncommitted_tail_is_truncated(queue: WorkQueue, run_dir: Path) -> None:
    jobs = await claim_all(queue, 6)
    output = await recovered(queue, run_dir)
    await finish(queue, output, [ok(jobs[0]), ok(jobs[1]), failed(jobs[2])])
    committed = {n: (run_dir / n).read_bytes() for n in (RESULTS, ERRORS)}
    # the crash: a batch appended but never committed, the last line of each file half written
    output.append([row_of(ok(jobs[3])), row_of(failed(jobs[4]))])
    output.append([row_of(ok(jobs[5]))])
    output.close()
    for name in (RESULTS, ERRORS):
        with (run_dir / name).open("ab") as handle:
            handle.write(b'{"id":"batch_req_00000')
    for name in (RESULTS, ERRORS):
        with pytest.raises(json.JSONDecodeError):
            ids(run_dir / name)

    output = await recovered(queue, run_dir)
    try:
        assert {n: (run_dir / n).read_bytes() for n in (RESULTS, ERRORS)} == committed
        # the jobs of the lost batch were never marked finished: they run again, once
        assert await queue.reset_running() == 3
        again = await queue.claim(10, now=200.0, lease_s=60.0)
        assert [j.id for j in again] == ["job-3", "job-4", "job-5"]
        await finish(queue, output, [ok(again[0]), failed(again[1]), ok(again[2])])
    finally:
        output.close()
    assert ids(run_dir / RESULTS) == ["job-0", "job-1", "job-3", "job-5"]
    assert ids(run_dir / ERRORS) == ["job-2", "job-4"]
    recorded = await sizes_recorded(queue)
    assert recorded == {n: (run_dir / n).stat().st_size for n in (RESULTS, ERRORS)}


@pytest.mark.parametrize(
    "damage",
    ["results cut mid-line", "errors deleted", "both emptied"],
)
async def test_a_file_shorter_than_recorded_is_rebuilt_from_the_queue(
    queue: WorkQueue, run_dir: Path, damage: str
) -> None:
    jobs = await claim_all(queue, 7)
    output = await recovered(queue, run_dir)
    await finish(queue, output, [ok(jobs[0]), failed(jobs[1]), ok(jobs[2])])
    await finish(queue, output, [ok(jobs[3]), failed(jobs[4])])
    output.close()
    whole = {n: (run_dir / n).read_bytes() for n in (RESULTS, ERRORS)}
    if damage == "results cut mid-line":
        (run_dir / RESULTS).write_bytes(whole[RESULTS][: len(whole[RESULTS]) // 2 + 3])
    elif damage == "errors deleted":
        (run_dir / ERRORS).unlink()
    else:
        (run_dir / RESULTS).write_bytes(b"")
        (run_dir / ERRORS).write_bytes(b"")

    output = await recovered(queue, run_dir)
    try:
        assert {n: (run_dir / n).read_bytes() for n in (RESULTS, ERRORS)} == whole
        await finish(queue, output, [ok(jobs[5]), failed(jobs[6])])  # appending goes on
    finally:
        output.close()
    assert ids(run_dir / RESULTS) == ["job-0", "job-2", "job-3", "job-5"]
    assert ids(run_dir / ERRORS) == ["job-1", "job-4", "job-6"]
    assert await sizes_recorded(queue) == {
        n: (run_dir / n).stat().st_size for n in (RESULTS, ERRORS)
    }


async def test_a_pending_rebuild_is_done_again(queue: WorkQueue, run_dir: Path) -> None:
    """A crash in the middle of a rebuild: the flag is still set, so the next start rebuilds,
    even though the files have the recorded sizes (their content cannot be trusted)."""
    jobs = await claim_all(queue, 4)
    output = await recovered(queue, run_dir)
    await finish(queue, output, [ok(jobs[0]), failed(jobs[1]), ok(jobs[2]), ok(jobs[3])])
    output.close()
    whole = (run_dir / RESULTS).read_bytes()
    (run_dir / RESULTS).write_bytes(b"x" * len(whole))  # same size, wrong content
    (run_dir / f".{RESULTS}.tmp").write_bytes(b"half of an earlier rebuild")
    await queue.set_meta({REBUILD_PENDING: "1"})

    output = await recovered(queue, run_dir)
    output.close()
    assert (run_dir / RESULTS).read_bytes() == whole
    assert ids(run_dir / ERRORS) == ["job-1"]
    assert await queue.get_meta(REBUILD_PENDING) == "0"
    assert not (run_dir / f".{RESULTS}.tmp").exists()


async def test_without_a_flag_a_same_size_file_is_kept(queue: WorkQueue, run_dir: Path) -> None:
    """The control for the test above: recovery trusts the recorded size alone."""
    jobs = await claim_all(queue, 2)
    output = await recovered(queue, run_dir)
    await finish(queue, output, [ok(jobs[0]), ok(jobs[1])])
    output.close()
    size = (run_dir / RESULTS).stat().st_size
    (run_dir / RESULTS).write_bytes(b"x" * size)
    (await recovered(queue, run_dir)).close()
    assert (run_dir / RESULTS).read_bytes() == b"x" * size


async def test_a_rebuild_writes_the_same_bytes_the_writer_appended(
    queue: WorkQueue, run_dir: Path
) -> None:
    """Lines rendered from the queue's rows equal those rendered from the outcomes, so a
    rebuild after a crash changes nothing a reader already saw (retries, cache, costs)."""
    jobs = await claim_all(queue, 5)
    output = await recovered(queue, run_dir)
    first_try = Retry(jobs[3].seq, ErrorInfo("ServerError", "HTTP 503", 503), 0.0, 90.0)
    await finish(queue, output, [ok(jobs[0]), failed(jobs[1]), ok(jobs[2], cached=True)])
    await finish(queue, output, [first_try])
    [retried] = await queue.claim(1, now=150.0, lease_s=60.0)
    assert (retried.attempts, retried.first_started_at) == (1, 90.0)
    await finish(queue, output, [ok(retried), failed(jobs[4])])
    appended = {n: (run_dir / n).read_bytes() for n in (RESULTS, ERRORS)}
    lines = [json.loads(line) for line in appended[RESULTS].splitlines()]
    assert [line["engine"]["attempts"] for line in lines] == [1, 1, 2]
    assert [line["engine"].get("cost_usd") for line in lines] == [2.9e-05, 0.0, 2.9e-05]

    await output.rebuild(queue)
    output.close()
    assert {n: (run_dir / n).read_bytes() for n in (RESULTS, ERRORS)} == appended
