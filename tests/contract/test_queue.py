"""Contract tests of the work queue, run once per backend (as saq's tests/test_queue.py).

Every backend must pass the tests that take the `queue` fixture: SQLite on a real file in
`tmp_path`, the in-memory backend, and PostgreSQL on a real server (a fresh database per test
session, emptied before each test: see tests/pg.py; skipped with the reason when no server
answers and PERSONA_TESTBED_TEST_PG is unset). Tests of one backend's storage (schema,
migration, persistence across a reopen) take `sqlite_queue` or `pg_url`. A new backend: a
name in BACKENDS and a branch in `open_backend`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.inputs import canonical_body, fingerprint
from engine.queue import CacheSpec, EnqueueConflict, SchemaVersionError, WorkQueue
from engine.queue.memory import MemoryQueue
from engine.queue.postgres import PostgresQueue
from engine.queue.sqlite import RECORDS_CHUNK, SCHEMA_VERSION, SQLiteQueue
from schemas.batches import BatchMember, BatchRow, BatchState
from schemas.job import Done, ErrorInfo, Failed, NewJob, Outcome, Released, Retry, Status

BACKENDS = ("sqlite", "memory", "postgresql")


def make_job(i: int, text: str = "hello", line: int | None = None) -> NewJob:
    payload = canonical_body({"model": "m", "messages": [{"role": "user", "content": text}]})
    return NewJob(id=f"job-{i}", fingerprint=fingerprint(payload), payload=payload, line=line or i)


def done(seq: int, job_id: str, at: float = 100.0, fp: str = "fp") -> Done:
    body = b'{"id":"x","choices":[]}'
    return Done(seq, job_id, fp, 1, body, 200, "req", 3, 4, 5.0, at, at + 1, at)


async def open_backend(
    backend: str,
    tmp_path: Path,
    cache: CacheSpec | None = None,
    name: str = "queue.sqlite",
    request: pytest.FixtureRequest | None = None,
) -> WorkQueue:
    if backend == "sqlite":
        return await SQLiteQueue.open(tmp_path / name, cache)
    if backend == "postgresql":
        assert request is not None
        # the fixture is asked for only here: SQLite and memory tests need no server
        url: str = request.getfixturevalue("pg_url")
        return await PostgresQueue.open(url, cache)
    return await MemoryQueue.open(cache)


@pytest.fixture(params=BACKENDS)
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WorkQueue]:
    q = await open_backend(request.param, tmp_path, request=request)
    yield q
    await q.close()


@pytest.fixture
async def sqlite_queue(tmp_path: Path) -> AsyncIterator[SQLiteQueue]:
    q = await SQLiteQueue.open(tmp_path / "queue.sqlite")
    yield q
    await q.close()


async def test_schema_is_versioned_and_wal(sqlite_queue: SQLiteQueue) -> None:
    with sqlite3.connect(sqlite_queue.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_status_check_constraint(sqlite_queue: SQLiteQueue) -> None:
    await sqlite_queue.enqueue([make_job(1)])
    with sqlite3.connect(sqlite_queue.path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE jobs SET status = 'lost'")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError, match="newer"):
        await SQLiteQueue.open(path)


async def test_enqueue_is_idempotent(queue: WorkQueue) -> None:
    jobs = [make_job(i) for i in range(50)]
    assert await queue.enqueue(jobs) == 50
    assert await queue.enqueue(jobs) == 0
    assert (await queue.counts()).count(Status.QUEUED) == 50


async def test_enqueue_conflict_rolls_back_everything(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(1)])
    batch = [make_job(2), make_job(3), make_job(1, text="different", line=7)]
    with pytest.raises(EnqueueConflict) as info:
        await queue.enqueue(batch)
    assert info.value.line == 7
    assert info.value.job_id == "job-1"
    assert (await queue.counts()).total == 1


async def test_duplicate_id_with_other_body_in_one_input(queue: WorkQueue) -> None:
    batch = [make_job(1, line=1), make_job(2, line=2), make_job(1, text="other", line=3)]
    with pytest.raises(EnqueueConflict, match="line 3") as info:
        await queue.enqueue(batch)
    assert info.value.other_line == 1
    assert (await queue.counts()).total == 0


async def test_identical_repeats_are_one_job_and_the_first_conflict_in_input_order_is_named(
    queue: WorkQueue,
) -> None:
    same = [make_job(1, line=1), make_job(2, line=2), make_job(1, line=3)]
    assert await queue.enqueue(same) == 2  # the same request twice: one job
    batch = [
        make_job(5, line=1),
        make_job(6, line=2),
        make_job(6, text="other", line=3),
        make_job(5, line=4),  # a repeat of line 1, the same request
        make_job(5, text="other", line=5),
        make_job(1, text="other", line=6),  # enqueued before with another request
    ]
    with pytest.raises(EnqueueConflict) as info:
        await queue.enqueue(batch)
    assert (info.value.job_id, info.value.line, info.value.other_line) == ("job-6", 3, 2)
    with pytest.raises(EnqueueConflict) as info:  # no repeat within: the earlier job is named
        await queue.enqueue([make_job(7, line=1), make_job(1, text="other", line=2)])
    assert (info.value.job_id, info.value.line, info.value.other_line) == ("job-1", 2, None)
    assert (await queue.counts()).total == 2


async def test_error_while_reading_input_enqueues_nothing(queue: WorkQueue) -> None:
    def jobs() -> Iterator[NewJob]:
        for i in range(6000):  # more than one insert chunk before the failure
            yield make_job(i)
        raise ValueError("bad line 6001")

    with pytest.raises(ValueError, match="bad line"):
        await queue.enqueue(jobs())
    assert (await queue.counts()).total == 0
    assert await queue.enqueue([make_job(1)]) == 1  # the queue is usable afterwards


async def test_claim_sets_lease_and_is_exclusive(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(10)])
    first = await queue.claim(4, now=1000.0, lease_s=30.0)
    second = await queue.claim(100, now=1000.0, lease_s=30.0)
    assert [j.id for j in first] == [f"job-{i}" for i in range(4)]
    assert {j.id for j in second} == {f"job-{i}" for i in range(4, 10)}
    assert await queue.claim(10, now=1000.0, lease_s=30.0) == []
    assert await queue.has_running()
    assert await queue.sweep(now=1029.0) == 0  # the lease runs to now + lease_s
    assert await queue.sweep(now=1031.0) == 10


async def test_sweep_returns_only_expired_leases(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(4)])
    await queue.claim(2, now=1000.0, lease_s=10.0)
    await queue.claim(2, now=1005.0, lease_s=10.0)
    assert await queue.sweep(now=1012.0) == 2
    again = await queue.claim(10, now=1012.0, lease_s=10.0)
    assert [j.id for j in again] == ["job-0", "job-1"]


async def test_renew_keeps_a_lease_alive(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(1)])
    [job] = await queue.claim(1, now=1000.0, lease_s=10.0)
    await queue.renew([job.seq], lease_until=2000.0)
    assert await queue.sweep(now=1500.0) == 0


async def test_commit_batch_of_outcomes(queue: WorkQueue) -> None:
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


async def test_iter_terminal_streams_in_enqueue_order(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(25)])
    jobs = await queue.claim(25, now=1.0, lease_s=60.0)
    await queue.commit([done(j.seq, j.id) for j in reversed(jobs)], {})
    rows = [row async for row in queue.iter_terminal(chunk=7)]
    assert [r.id for r in rows] == [f"job-{i}" for i in range(25)]
    assert all(r.status is Status.DONE and r.result for r in rows)


async def test_iter_terminal_failed_only_streams_the_failed_jobs(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(20)])
    jobs = await queue.claim(20, now=1.0, lease_s=60.0)
    outcomes = [
        _failed(j.seq, j.id, 400, "invalid_value") if i % 3 == 0 else done(j.seq, j.id)
        for i, j in enumerate(jobs)
    ]
    await queue.commit(outcomes, {})
    rows = [row async for row in queue.iter_terminal(chunk=3, failed_only=True)]
    assert [r.id for r in rows] == [f"job-{i}" for i in range(0, 20, 3)]
    assert all(r.status is Status.FAILED and r.result is None for r in rows)


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


def child(i: int, parent: str) -> NewJob:
    return NewJob(id=f"child-{i}", fingerprint="", payload=b"", stage="child", parent_id=parent)


async def test_children_wait_until_their_parent_is_done(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(1), make_job(2), child(1, "job-1"), child(2, "job-2")])
    assert (await queue.counts()).count(Status.WAITING) == 2
    a, b = await queue.claim(10, now=1.0, lease_s=60.0)
    error = ErrorInfo("PermanentError", "HTTP 400", 400)
    await queue.commit([done(a.seq, a.id), Failed(b.seq, b.id, 1, error, 1.0, 2.0, 1.0)], {})
    [released] = await queue.claim(10, now=3.0, lease_s=60.0)
    assert released.id == "child-1"  # a failed parent's child keeps waiting
    assert released.payload == b""  # its request is the pipeline's to build
    assert (await queue.counts()).by_stage["child"] == {"running": 1, "waiting": 1}


async def test_done_rows_by_job_id(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(3)])
    a, b, _ = await queue.claim(3, now=1.0, lease_s=60.0)
    await queue.commit([done(a.seq, a.id), Released(b.seq)], {})
    rows = await queue.done_rows(["job-0", "job-1", "job-2", "nope"])
    assert list(rows) == ["job-0"]
    assert rows["job-0"].result == b'{"id":"x","choices":[]}'
    assert rows["job-0"].prompt_tokens == 3


async def test_records_are_kept_with_the_jobs_in_order(queue: WorkQueue) -> None:
    records = {"person": [(f"p{i}", f"text {i}".encode()) for i in (3, 1, 2)]}
    await queue.enqueue([make_job(1)], records, {"sig": "abc"})
    await queue.enqueue([make_job(1)], {"person": [("p1", b"other")]})  # kept as first written
    got = [item async for item in queue.iter_records("person", chunk=2)]
    assert got == [("p3", b"text 3"), ("p1", b"text 1"), ("p2", b"text 2")]
    assert [item async for item in queue.iter_records("other")] == []
    assert await queue.get_meta("sig") == "abc"


async def test_bad_records_enqueue_nothing(queue: WorkQueue) -> None:
    def bad() -> Iterator[tuple[str, bytes]]:
        yield ("p1", b"one")
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        await queue.enqueue([make_job(1)], {"person": bad()}, {"sig": "abc"})
    assert (await queue.counts()).total == 0
    assert [item async for item in queue.iter_records("person")] == []
    assert await queue.get_meta("sig") is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_cache_answers_only_within_its_scope(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache_path = tmp_path / "cache.sqlite"
    a = CacheSpec(cache_path, "http://server-a/v1")
    b = CacheSpec(cache_path, "http://server-b/v1")
    first = await open_backend(backend, tmp_path, a, "one.sqlite", request)
    await first.enqueue([make_job(1)])
    [job] = await first.claim(1, now=1.0, lease_s=60.0)
    await first.commit([done(job.seq, job.id, fp=job.fingerprint)], {})
    assert set(await first.cached_results([job.fingerprint])) == {job.fingerprint}
    shared = first.shared_cache if isinstance(first, MemoryQueue) else None
    await first.close()
    for spec, hits in ((a, 1), (b, 0)):
        if backend == "sqlite":
            other: WorkQueue = await SQLiteQueue.open(tmp_path / "two.sqlite", spec)
        elif backend == "postgresql":  # the cache lives in the run's database: another worker
            other = await PostgresQueue.open(request.getfixturevalue("pg_url"), spec)
        else:
            other = MemoryQueue(spec, shared)
        assert len(await other.cached_results([job.fingerprint])) == hits
        await other.close()


async def test_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE personas (id TEXT PRIMARY KEY, text TEXT NOT NULL);
            CREATE TABLE prompts (id TEXT PRIMARY KEY, topic TEXT NOT NULL, text TEXT NOT NULL);
            CREATE TABLE pairs (persona_id TEXT NOT NULL, prompt_id TEXT NOT NULL,
                                split TEXT NOT NULL, PRIMARY KEY (persona_id, prompt_id));
            INSERT INTO meta VALUES ('graph.signature', 'abc');
            INSERT INTO personas VALUES ('p2', 'second'), ('p1', 'first');
            INSERT INTO prompts VALUES ('q1', 'guns', 'Why?');
            INSERT INTO pairs VALUES ('p2', 'q1', 'train');
            PRAGMA user_version = 1;
            """
        )
    queue = await SQLiteQueue.open(path)
    try:
        personas = [item async for item in queue.iter_records("persona")]
        assert personas == [
            ("p2", b'{"id":"p2","text":"second"}'),
            ("p1", b'{"id":"p1","text":"first"}'),
        ]
        [(key, _)] = [item async for item in queue.iter_records("pair")]
        assert key == "p2:q1"
        assert await queue.get_meta("run.pipeline") == "persona"
    finally:
        await queue.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "personas" not in tables


async def test_sqlite_reads_by_id_through_the_id_index(sqlite_queue: SQLiteQueue) -> None:
    """`done_rows` runs once per claimed batch of children: a scan of the status index there
    made a 40,000-call PERSONA run spend a fifth of its time in it."""
    with sqlite3.connect(sqlite_queue.path) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM jobs WHERE id IN (?, ?) AND +status = 'done'",
            ("a", "b"),
        ).fetchall()
    assert "sqlite_autoindex_jobs_1" in str(plan)
    source = Path(SQLiteQueue.__module__.replace(".", "/") + ".py")
    assert "AND +status = 'done'" in (Path(__file__).parents[2] / source).read_text()


async def test_sqlite_reads_records_in_seq_order_without_sorting(
    sqlite_queue: SQLiteQueue,
) -> None:
    """`iter_records` reads a kind chunk by chunk: through the (kind, key) index each chunk
    sorted every record of the kind (64 ms a chunk of 1,000 among 317,200 pairs)."""
    with sqlite3.connect(sqlite_queue.path) as db:
        plan = str(db.execute("EXPLAIN QUERY PLAN " + RECORDS_CHUNK, ("pair", 0, 10)).fetchall())
    assert "INTEGER PRIMARY KEY" in plan
    assert "TEMP B-TREE" not in plan


async def test_sqlite_first_enqueue_builds_the_indexes_after_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    queue = await SQLiteQueue.open(path)
    with pytest.raises(EnqueueConflict):  # a first enqueue that fails leaves the schema whole
        await queue.enqueue([make_job(1), make_job(2), make_job(1, text="other")])
    await queue.enqueue([make_job(i) for i in range(10)])
    await queue.enqueue([make_job(i) for i in range(10, 20)])  # not the first: indexes kept
    await queue.close()
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"jobs_ready", "jobs_due", "jobs_parent"} <= names
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 20


def _failed(job_seq: int, job_id: str, status: int, code: str, attempts: int = 3) -> Failed:
    body = json.dumps({"error": {"message": "no", "type": "invalid_request_error", "code": code}})
    error = ErrorInfo("PermanentError", f"HTTP {status}", status, body)
    return Failed(job_seq, job_id, attempts, error, 100.0, 101.0, 100.0)


async def test_requeue_failed_gives_fresh_attempts_and_runs_again(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(4)])
    a, b, c, d = await queue.claim(4, now=100.0, lease_s=60.0)
    await queue.commit(
        [
            done(a.seq, a.id),
            _failed(b.seq, b.id, 400, "invalid_value"),
            _failed(c.seq, c.id, 401, "invalid_api_key"),
            Retry(d.seq, ErrorInfo("ServerError", "HTTP 503", 503), 900.0, 100.0),
        ],
        {},
    )
    assert await queue.requeue_failed() == 2
    counts = await queue.counts()
    assert counts.by_status == {"done": 1, "queued": 3}
    assert [t.id for t in [row async for row in queue.iter_terminal()]] == [a.id]
    again = await queue.claim(10, now=200.0, lease_s=60.0)  # due now, before the retry
    assert [(j.id, j.attempts) for j in again] == [(b.id, 0), (c.id, 0)]
    assert await queue.requeue_failed() == 0  # nothing failed any more


async def test_requeue_failed_by_status_or_error_code(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i) for i in range(3)])
    a, b, c = await queue.claim(3, now=100.0, lease_s=60.0)
    refused = ErrorInfo(
        "ContentRefused",
        "the reply was withheld: finish_reason content_filter",
        200,
        '{"choices": [{"index": 0, "message": {"role": "assistant"}, '
        '"finish_reason": "content_filter"}]}',
    )
    await queue.commit(
        [
            _failed(a.seq, a.id, 400, "invalid_value"),
            _failed(b.seq, b.id, 401, "invalid_api_key"),
            Failed(c.seq, c.id, 1, refused, 100.0, 101.0, 100.0),
        ],
        {},
    )
    assert await queue.requeue_failed(["invalid_api_key"]) == 1
    assert await queue.requeue_failed(["404", "no_such_code"]) == 0
    assert await queue.requeue_failed(["content_filter"]) == 1
    claimed = await queue.claim(10, now=200.0, lease_s=60.0)
    assert sorted(j.id for j in claimed) == sorted([b.id, c.id])
    assert await queue.requeue_failed(["400"]) == 1
    assert (await queue.counts()).by_status == {"queued": 1, "running": 2}


async def test_a_requeued_parent_releases_its_waiting_child(queue: WorkQueue) -> None:
    parent = make_job(1)
    child = NewJob("child", "fp-child", b"", parent_id=parent.id)
    await queue.enqueue([parent, child])
    (claimed,) = await queue.claim(10, now=100.0, lease_s=60.0)
    await queue.commit([_failed(claimed.seq, claimed.id, 404, "model_not_found")], {})
    assert await queue.requeue_failed() == 1
    (again,) = await queue.claim(10, now=200.0, lease_s=60.0)
    assert again.id == parent.id
    await queue.commit([done(again.seq, again.id)], {})
    assert [j.id for j in await queue.claim(10, now=300.0, lease_s=60.0)] == ["child"]


# -- Batch API bookkeeping (engine.batch) ---------------------------------------------------


def _batch(key: str, requests: int) -> BatchRow:
    return BatchRow(
        key=key, state=BatchState.PREPARED, requests=requests, bytes=10, est_tokens=5,
        created_at=1.0,
    )  # fmt: skip


async def _open_batch(queue: WorkQueue, key: str, n: int) -> list[int]:
    claimed = await queue.claim(n, 0.0, 30.0)
    members = [BatchMember(j.seq, j.id, f"fp-{j.id}") for j in claimed]
    await queue.batch_open(_batch(key, len(members)), members)
    return [j.seq for j in claimed]


async def test_batch_members_are_neither_swept_nor_reset(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i, text=f"t{i}") for i in range(4)])
    seqs = await _open_batch(queue, "b1", 2)
    loose = await queue.claim(1, 0.0, 30.0)
    assert await queue.sweep(1e9) == 1  # the loose claim's lease expired; the batch's did not
    assert await queue.reset_running() == 0
    assert (await queue.counts()).count(Status.RUNNING) == 2
    again = await queue.claim(10, 0.0, 30.0)
    assert {j.seq for j in again}.isdisjoint(seqs)
    assert loose[0].seq in {j.seq for j in again}


async def test_batch_rows_are_stored_and_listed(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i, text=f"t{i}") for i in range(3)])
    await _open_batch(queue, "b1", 3)
    [row] = await queue.batches()
    assert row.state is BatchState.PREPARED
    assert row.requests == 3
    row.state, row.input_file_id = BatchState.UPLOADED, "file-1"
    await queue.batch_update(row)
    [stored] = await queue.batches()
    assert stored.input_file_id == "file-1"
    assert stored.state is BatchState.UPLOADED
    members = await queue.batch_members("b1")
    assert [custom_id for _, custom_id in members] == ["job-0", "job-1", "job-2"]
    assert [job.fingerprint for job, _ in members] == ["fp-job-0", "fp-job-1", "fp-job-2"]
    assert all(job.payload == b"" for job, _ in members)


async def test_batch_settle_commits_outcomes_and_frees_members(queue: WorkQueue) -> None:
    await queue.enqueue([make_job(i, text=f"t{i}") for i in range(3)])
    seqs = await _open_batch(queue, "b1", 3)
    [row] = await queue.batches()
    row.state = BatchState.CLOSED
    retry = Retry(seqs[1], ErrorInfo("ServerError", "500"), next_run_at=0.0, started_at=1.0)
    failed = Failed(seqs[2], "job-2", 1, ErrorInfo("PermanentError", "400", 400), 1.0, 2.0, 1.0)
    await queue.batch_settle(row, [done(seqs[0], "job-0"), retry, failed], {"k": "v"})
    assert await queue.batches() == []
    [closed] = await queue.batches(include_closed=True)
    assert closed.state is BatchState.CLOSED
    assert await queue.batch_members("b1") == []
    counts = await queue.counts()
    assert (counts.count(Status.DONE), counts.count(Status.QUEUED)) == (1, 1)
    assert counts.count(Status.FAILED) == 1
    assert await queue.get_meta("k") == "v"
    [claimed] = await queue.claim(5, 1.0, 30.0)  # the retried job is claimable again
    assert claimed.seq == seqs[1]


async def test_batches_survive_a_reopen(tmp_path: Path) -> None:
    first = await SQLiteQueue.open(tmp_path / "q.sqlite")
    await first.enqueue([make_job(i, text=f"t{i}") for i in range(2)])
    await _open_batch(first, "b1", 2)
    await first.close()
    second = await SQLiteQueue.open(tmp_path / "q.sqlite")
    try:
        assert await second.reset_running() == 0
        assert [b.key for b in await second.batches()] == ["b1"]
        assert len(await second.batch_members("b1")) == 2
    finally:
        await second.close()


async def test_version_2_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    q = await SQLiteQueue.open(path)
    await q.enqueue([make_job(1)])
    await q.close()
    with sqlite3.connect(path) as db:  # take it back to what version 2 wrote
        db.execute("DROP TABLE batch_jobs")
        db.execute("DROP TABLE batches")
        db.execute("DROP TABLE blob_dicts")
        db.execute("PRAGMA user_version = 2")
    queue = await SQLiteQueue.open(path)
    try:
        assert (await queue.counts()).total == 1
        assert await queue.batches() == []
        await _open_batch(queue, "b1", 1)
        assert len(await queue.batch_members("b1")) == 1
    finally:
        await queue.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
