"""Contract tests of the work queue on real SQLite files.

Every backend must pass these; today there is one (`SQLiteQueue`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.inputs import canonical_body, fingerprint
from engine.queue import EnqueueConflict, SchemaVersionError
from engine.sqlite_queue import SCHEMA_VERSION, SQLiteQueue
from schemas.job import Done, ErrorInfo, Failed, NewJob, Outcome, Released, Retry, Status


def make_job(i: int, text: str = "hello", line: int | None = None) -> NewJob:
    payload = canonical_body({"model": "m", "messages": [{"role": "user", "content": text}]})
    return NewJob(id=f"job-{i}", fingerprint=fingerprint(payload), payload=payload, line=line or i)


def done(seq: int, job_id: str, at: float = 100.0) -> Done:
    body = b'{"id":"x","choices":[]}'
    return Done(seq, job_id, "fp", 1, body, 200, "req", 3, 4, 5.0, at, at + 1, at)


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SQLiteQueue]:
    q = await SQLiteQueue.open(tmp_path / "queue.sqlite")
    yield q
    await q.close()


async def test_schema_is_versioned_and_wal(queue: SQLiteQueue) -> None:
    with sqlite3.connect(queue.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_status_check_constraint(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(1)])
    with sqlite3.connect(queue.path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE jobs SET status = 'lost'")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError, match="newer"):
        await SQLiteQueue.open(path)


async def test_enqueue_is_idempotent(queue: SQLiteQueue) -> None:
    jobs = [make_job(i) for i in range(50)]
    assert await queue.enqueue(jobs) == 50
    assert await queue.enqueue(jobs) == 0
    assert (await queue.counts()).count(Status.QUEUED) == 50


async def test_enqueue_conflict_rolls_back_everything(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(1)])
    batch = [make_job(2), make_job(3), make_job(1, text="different", line=7)]
    with pytest.raises(EnqueueConflict) as info:
        await queue.enqueue(batch)
    assert info.value.line == 7
    assert info.value.job_id == "job-1"
    assert (await queue.counts()).total == 1


async def test_duplicate_id_with_other_body_in_one_input(queue: SQLiteQueue) -> None:
    batch = [make_job(1, line=1), make_job(2, line=2), make_job(1, text="other", line=3)]
    with pytest.raises(EnqueueConflict, match="line 3") as info:
        await queue.enqueue(batch)
    assert info.value.other_line == 1
    assert (await queue.counts()).total == 0


async def test_error_while_reading_input_enqueues_nothing(queue: SQLiteQueue) -> None:
    def jobs() -> Iterator[NewJob]:
        for i in range(6000):  # more than one insert chunk before the failure
            yield make_job(i)
        raise ValueError("bad line 6001")

    with pytest.raises(ValueError, match="bad line"):
        await queue.enqueue(jobs())
    assert (await queue.counts()).total == 0
    assert await queue.enqueue([make_job(1)]) == 1  # the queue is usable afterwards


async def test_claim_sets_lease_and_is_exclusive(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(10)])
    first = await queue.claim(4, now=1000.0, lease_s=30.0)
    second = await queue.claim(100, now=1000.0, lease_s=30.0)
    assert [j.id for j in first] == [f"job-{i}" for i in range(4)]
    assert {j.id for j in second} == {f"job-{i}" for i in range(4, 10)}
    assert await queue.claim(10, now=1000.0, lease_s=30.0) == []
    with sqlite3.connect(queue.path) as db:
        leases = {row[0] for row in db.execute("SELECT lease_until FROM jobs")}
    assert leases == {1030.0}
    assert await queue.has_running()


async def test_sweep_returns_only_expired_leases(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(4)])
    await queue.claim(2, now=1000.0, lease_s=10.0)
    await queue.claim(2, now=1005.0, lease_s=10.0)
    assert await queue.sweep(now=1012.0) == 2
    again = await queue.claim(10, now=1012.0, lease_s=10.0)
    assert [j.id for j in again] == ["job-0", "job-1"]


async def test_renew_keeps_a_lease_alive(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(1)])
    [job] = await queue.claim(1, now=1000.0, lease_s=10.0)
    await queue.renew([job.seq], lease_until=2000.0)
    assert await queue.sweep(now=1500.0) == 0


async def test_commit_batch_of_outcomes(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(4)])
    a, b, c, d = await queue.claim(4, now=100.0, lease_s=60.0)
    error = ErrorInfo("ServerError", "HTTP 503", 503)
    outcomes: list[Outcome] = [
        done(a.seq, a.id),
        Retry(b.seq, error, next_run_at=500.0, started_at=100.0),
        Failed(c.seq, c.id, 1, ErrorInfo("PermanentError", "HTTP 400", 400), 100.0, 101.0, 100.0),
        Released(d.seq),
    ]
    await queue.commit(outcomes, {"k": "v"})
    counts = await queue.counts()
    assert counts.by_status == {"done": 1, "queued": 2, "failed": 1}
    assert counts.attempts == 3  # released spends none
    assert counts.prompt_tokens == 3
    assert counts.completion_tokens == 4
    assert await queue.get_meta("k") == "v"
    assert await queue.next_due() == 0.0  # the released one is due now
    claimed = await queue.claim(10, now=200.0, lease_s=60.0)
    assert [j.id for j in claimed] == [d.id]  # the retry waits for its next-run time
    later = await queue.claim(10, now=500.0, lease_s=60.0)
    assert [(j.id, j.attempts) for j in later] == [(b.id, 1)]


async def test_iter_terminal_streams_in_enqueue_order(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(25)])
    jobs = await queue.claim(25, now=1.0, lease_s=60.0)
    await queue.commit([done(j.seq, j.id) for j in reversed(jobs)], {})
    rows = [row async for row in queue.iter_terminal(chunk=7)]
    assert [r.id for r in rows] == [f"job-{i}" for i in range(25)]
    assert all(r.status is Status.DONE and r.result for r in rows)


async def test_reset_running_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    first = await SQLiteQueue.open(path)
    await first.enqueue([make_job(i) for i in range(3)])
    await first.claim(3, now=1.0, lease_s=1e9)
    await first.close()
    second = await SQLiteQueue.open(path)
    try:
        assert await second.reset_running() == 3
        assert len(await second.claim(10, now=2.0, lease_s=10.0)) == 3
    finally:
        await second.close()
