"""The PostgreSQL backend's own storage: schema, bad URLs, several workers on one database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import structlog

from engine.errors import SettingsError
from engine.queue import SchemaVersionError
from engine.queue.backends import open_shared_queue
from engine.queue.postgres import SCHEMA_VERSION, PostgresQueue, redact
from schemas.batches import BatchMember, BatchRow, BatchState
from schemas.job import ClaimedJob, Status
from tests.contract.test_queue import done, make_job


async def _fetchval(url: str, sql: str) -> object:
    db = await asyncpg.connect(url)
    try:
        return await db.fetchval(sql)
    finally:
        await db.close()


async def test_schema_is_created_and_versioned(pg_url: str) -> None:
    queue = await PostgresQueue.open(pg_url)
    await queue.close()
    again = await PostgresQueue.open(pg_url)  # a second open keeps what is there
    await again.close()
    assert await _fetchval(pg_url, "SELECT version FROM schema_info") == SCHEMA_VERSION
    assert await _fetchval(pg_url, "SELECT count(*) FROM schema_info") == 1


async def test_hosts_opening_at_once_create_the_schema_once(pg_url: str) -> None:
    queues = await asyncio.gather(*(PostgresQueue.open(pg_url) for _ in range(4)))
    for queue in queues:
        await queue.close()
    assert await _fetchval(pg_url, "SELECT count(*) FROM schema_info") == 1


async def test_newer_schema_is_refused(pg_url: str) -> None:
    queue = await PostgresQueue.open(pg_url)
    await queue.close()
    db = await asyncpg.connect(pg_url)
    await db.execute("UPDATE schema_info SET version = $1", SCHEMA_VERSION + 1)
    await db.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        await PostgresQueue.open(pg_url)


async def test_a_database_with_other_tables_named_alike_is_refused(pg_url: str) -> None:
    db = await asyncpg.connect(pg_url)
    await db.execute("CREATE TABLE jobs (x integer)")
    await db.close()
    with pytest.raises(SettingsError, match="did not create"):
        await PostgresQueue.open(pg_url)
    # nothing half-created: the schema was not written
    assert await _fetchval(pg_url, "SELECT to_regclass('schema_info') IS NULL") is True


async def test_unreachable_server_is_a_settings_error_without_the_password() -> None:
    url = "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(SettingsError) as info:
        await open_shared_queue(url)
    assert "s3cret-pw" not in str(info.value)
    assert "someone:***@127.0.0.1:1" in str(info.value)


async def test_missing_database_is_a_settings_error(pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/persona_testbed_no_such_db"
    with pytest.raises(SettingsError, match="persona_testbed_no_such_db"):
        await open_shared_queue(url)


async def test_not_a_postgres_url() -> None:
    with pytest.raises(SettingsError, match="PostgreSQL URL"):
        await open_shared_queue("mysql://root@127.0.0.1/test")
    with pytest.raises(SettingsError, match="not a path"):
        await open_shared_queue("runs/queue.sqlite")


def test_redact() -> None:
    assert redact("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert "pw" not in redact("postgresql://u:pw@[::1]:5432/d?sslmode=disable")


async def test_workers_claim_disjoint_batches(pg_url: str) -> None:
    workers = [await PostgresQueue.open(pg_url) for _ in range(4)]
    try:
        await workers[0].enqueue([make_job(i) for i in range(400)])
        batches = await asyncio.gather(
            *(w.claim(40, now=1.0, lease_s=60.0) for w in workers for _ in range(3))
        )
        ids = [j.id for batch in batches for j in batch]
        assert len(ids) == len(set(ids)) == 400  # 12 claims of 40 over 400 jobs: all, once
    finally:
        for w in workers:
            await w.close()


async def test_a_claim_whose_answer_was_lost_returns_the_jobs_it_leased(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies after the claim's UPDATE committed, before its rows arrive (a
    server restart, pg_terminate_backend): the claim's retry answers with the jobs leased
    then, instead of leaving them to wait out their lease, and leases no others."""
    queue = await PostgresQueue.open(pg_url)
    try:
        await queue.enqueue([make_job(i) for i in range(10)])
        real = queue._claim
        tries: list[bool] = []

        async def answer_lost_once(
            limit: int, now: float, lease_s: float, *, again: bool = False
        ) -> list[ClaimedJob]:
            tries.append(again)
            jobs = await real(limit, now, lease_s, again=again)
            if len(tries) == 1:
                raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
            return jobs

        monkeypatch.setattr(queue, "_claim", answer_lost_once)
        claimed = await queue.claim(4, now=1.0, lease_s=60.0)
        assert tries == [False, True]
        assert [j.id for j in claimed] == [make_job(i).id for i in range(4)]
        counts = await queue.counts()
        assert (counts.count(Status.RUNNING), counts.count(Status.QUEUED)) == (4, 6)
        monkeypatch.undo()
        # a retry whose first try never committed claims anew
        fresh = await queue._claim(4, now=2.0, lease_s=60.0, again=True)
        assert [j.id for j in fresh] == [make_job(i).id for i in range(4, 8)]
    finally:
        await queue.close()


async def test_a_job_taken_over_after_its_lease_is_completed_once(pg_url: str) -> None:
    slow = await PostgresQueue.open(pg_url)
    other = await PostgresQueue.open(pg_url)
    try:
        await slow.enqueue([make_job(1)])
        [job] = await slow.claim(1, now=100.0, lease_s=10.0)
        assert await other.sweep(now=111.0) == 1  # slow's lease ran out
        [again] = await other.claim(1, now=111.0, lease_s=10.0)
        await slow.renew([job.seq], lease_until=500.0)  # too late: not its job any more
        await slow.commit([done(job.seq, job.id, at=112.0)], {})  # ignored: not the owner
        assert (await other.counts()).count(Status.RUNNING) == 1
        await other.commit([done(again.seq, again.id, at=113.0)], {})
        rows = [r async for r in other.iter_terminal()]
        assert [(r.id, r.finished_at) for r in rows] == [(job.id, 114.0)]
        finished_by = await _fetchval(pg_url, "SELECT finished_by FROM jobs")
        assert finished_by == other.owner
    finally:
        await slow.close()
        await other.close()


async def test_heartbeats_count_live_workers(pg_url: str) -> None:
    a = await PostgresQueue.open(pg_url)
    b = await PostgresQueue.open(pg_url)
    try:
        await a.register_worker(8, now=100.0)
        await b.register_worker(8, now=100.0)
        assert await a.heartbeat(now=101.0, alive_s=5.0) == 2
        assert await a.heartbeat(now=110.0, alive_s=5.0) == 1  # b fell silent
        await b.heartbeat(now=111.0, alive_s=5.0)
        await b.worker_stopped(now=112.0)
        assert await a.heartbeat(now=112.0, alive_s=5.0) == 1  # b stopped
        await a.enqueue([make_job(1), make_job(2)])
        jobs = await a.claim(2, now=1.0, lease_s=60.0)
        await a.commit([done(j.seq, j.id) for j in jobs], {})
        rows = {w.id: w for w in await a.workers()}
        assert rows[a.owner].jobs_done == 2
        assert rows[b.owner].jobs_done == 0
        assert rows[b.owner].stopped_at == 112.0
    finally:
        await a.close()
        await b.close()


async def test_a_batch_opened_by_one_process_is_settled_by_another(pg_url: str) -> None:
    """After a crash, the Batch API runner of a new process collects the open batches: their
    members are taken over, so that the outcomes count."""
    opener = await PostgresQueue.open(pg_url)
    collector = await PostgresQueue.open(pg_url)
    try:
        await opener.enqueue([make_job(i, text=f"t{i}") for i in range(2)])
        claimed = await opener.claim(2, now=1.0, lease_s=30.0)
        members = [BatchMember(j.seq, j.id, j.fingerprint) for j in claimed]
        row = BatchRow(
            key="b1", state=BatchState.SUBMITTED, requests=2, bytes=1, est_tokens=1,
            created_at=1.0,
        )  # fmt: skip
        await opener.batch_open(row, members)
        row.state = BatchState.CLOSED
        outcomes = [done(j.seq, j.id) for j in claimed]
        await collector.batch_settle(row, outcomes, {})
        assert (await collector.counts()).count(Status.DONE) == 2
        assert await collector.batches() == []
    finally:
        await opener.close()
        await collector.close()


async def _until_waiting_on_locks(url: str, backends: int) -> None:
    """Poll until `backends` connections of this database wait for a lock."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _attempt in range(3000):
        if await _fetchval(url, sql) == backends:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{backends} connections never waited for a lock")


async def test_a_commit_and_a_renewal_of_the_same_jobs_lock_them_in_one_order(
    pg_url: str,
) -> None:
    """A worker commits results while its lease keeper renews the same jobs on another
    connection. Both held up behind a third transaction, then let go at once: with rows
    locked in different orders they deadlocked (seen in the four-worker run)."""
    queue = await PostgresQueue.open(pg_url)
    blocker = await asyncpg.connect(pg_url)
    try:
        await queue.enqueue([make_job(i) for i in range(300)])
        jobs = await queue.claim(300, now=100.0, lease_s=60.0)
        seqs = [j.seq for j in jobs]
        hold = blocker.transaction()
        await hold.start()
        await blocker.execute("SELECT 1 FROM jobs WHERE seq = $1 FOR UPDATE", max(seqs))
        outcomes = [done(j.seq, j.id, fp=f"fp-{j.seq}") for j in jobs[::-1]]
        with structlog.testing.capture_logs() as logs:
            commit = asyncio.create_task(queue.commit(outcomes, {}))
            renew = asyncio.create_task(queue.renew(seqs[::-1], lease_until=500.0))
            await _until_waiting_on_locks(pg_url, 2)  # behind the blocker or each other
            await hold.rollback()
            await asyncio.gather(commit, renew)
        assert [e for e in logs if e["event"] == "queue.transaction_retried"] == []
        assert (await queue.counts()).count(Status.DONE) == 300
    finally:
        await blocker.close()
        await queue.close()


async def test_a_transaction_the_server_rolled_back_is_run_again(pg_url: str) -> None:
    queue = await PostgresQueue.open(pg_url)
    tries: list[int] = []

    async def operation() -> int:
        tries.append(1)
        if len(tries) == 1:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return 7

    try:
        with structlog.testing.capture_logs() as logs:
            assert await queue._again("commit", operation) == 7
        assert len(tries) == 2
        assert [e["operation"] for e in logs if e["event"] == "queue.transaction_retried"] == [
            "commit"
        ]
    finally:
        await queue.close()
