"""Fresh replies reach the shared cache in sorted batches (engine.queue.sqlite): served to the
run from memory until then, written at close, and after a crash written at the next open
under the endpoint they came from."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from engine.queue import CacheSpec
from engine.queue import sqlite as sqlite_queue
from engine.queue.sqlite import SQLiteQueue
from schemas.job import Done, NewJob

N = 40
NEVER = 1e6  # seconds: longer than any test (and finite, for the event loop's timers)


def _body(i: int) -> bytes:
    return b'{"object": "chat.completion", "id": "c%d", "choices": []}' % i


def _cache_rows(path: Path) -> dict[str, set[str]]:
    """The cache's fingerprints by scope."""
    rows: dict[str, set[str]] = {}
    with sqlite3.connect(path) as db:
        for scope, fingerprint in db.execute("SELECT scope, fingerprint FROM responses"):
            rows.setdefault(scope, set()).add(fingerprint)
    return rows


async def _commit_fresh(queue: SQLiteQueue, n: int) -> None:
    await queue.enqueue(
        NewJob(id=f"job-{i}", fingerprint=f"fp-{i}", payload=b"{}", line=i) for i in range(n)
    )
    claimed = await queue.claim(n, now=1.0, lease_s=60.0)
    outcomes = [
        Done(j.seq, j.id, j.fingerprint, 1, _body(i), 200, "r", 1, 2, 3.0, 1.0, 2.0, 2.0)
        for i, j in enumerate(claimed)
    ]
    for start in range(0, n, 10):  # several commits, as the coordinator makes them
        await queue.commit(outcomes[start : start + 10], {})


@pytest.fixture
def no_early_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written to the cache before close, however slow the machine."""
    monkeypatch.setattr(sqlite_queue, "_CACHE_FLUSH_S", NEVER)
    monkeypatch.setattr(sqlite_queue, "_CACHE_FLUSH_ROWS", 10**9)


@pytest.mark.usefixtures("no_early_flush")
async def test_pending_replies_are_served_at_once_and_written_at_close(tmp_path: Path) -> None:
    cache_path = tmp_path / "cache.sqlite"
    queue = await SQLiteQueue.open(tmp_path / "q.sqlite", CacheSpec(cache_path, "scope-a"))
    await _commit_fresh(queue, N)
    assert _cache_rows(cache_path) == {}  # not yet written
    hits = await queue.cached_results([f"fp-{i}" for i in range(N)] + ["fp-unknown"])
    assert {fp: hit.body for fp, hit in hits.items()} == {f"fp-{i}": _body(i) for i in range(N)}
    await queue.close()
    assert _cache_rows(cache_path) == {"scope-a": {f"fp-{i}" for i in range(N)}}
    with sqlite3.connect(tmp_path / "q.sqlite") as db:
        assert db.execute("SELECT count(*) FROM cache_pending").fetchone()[0] == 0


async def test_a_crash_leaves_them_to_the_next_open_under_their_own_scope(tmp_path: Path) -> None:
    cache_path = tmp_path / "cache.sqlite"
    # a process that commits its replies and dies before any reaches the cache
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from pathlib import Path
        from engine.queue import CacheSpec
        from engine.queue import sqlite as sqlite_queue
        from tests.unit.test_cache_pending import _commit_fresh
        sqlite_queue._CACHE_FLUSH_S = 1e6
        sqlite_queue._CACHE_FLUSH_ROWS = 10**9

        async def main():
            cache = CacheSpec(Path({str(cache_path)!r}), "scope-a")
            queue = await sqlite_queue.SQLiteQueue.open(Path({str(tmp_path / "q.sqlite")!r}), cache)
            await _commit_fresh(queue, {N})
            os._exit(9)

        asyncio.run(main())
        """
    )
    root = Path(__file__).parents[2]
    died = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=root)
    assert await died.wait() == 9
    assert _cache_rows(cache_path) == {}
    with sqlite3.connect(tmp_path / "q.sqlite") as db:
        assert db.execute("SELECT count(*) FROM cache_pending").fetchone()[0] == N

    async def reopen_for_another_endpoint() -> dict[str, bytes]:
        queue = await SQLiteQueue.open(tmp_path / "q.sqlite", CacheSpec(cache_path, "scope-b"))
        hits = await queue.cached_results([f"fp-{i}" for i in range(N)])
        await queue.close()
        return {fp: hit.body for fp, hit in hits.items()}

    assert await reopen_for_another_endpoint() == {}  # scope-b is served none of them
    assert _cache_rows(cache_path) == {"scope-a": {f"fp-{i}" for i in range(N)}}

    async def read_as_a() -> dict[str, bytes]:
        queue = await SQLiteQueue.open(tmp_path / "other.sqlite", CacheSpec(cache_path, "scope-a"))
        hits = await queue.cached_results([f"fp-{i}" for i in range(N)])
        await queue.close()
        return {fp: hit.body for fp, hit in hits.items()}

    assert await read_as_a() == {f"fp-{i}": _body(i) for i in range(N)}


@pytest.mark.usefixtures("no_early_flush")
async def test_a_failed_commit_keeps_nothing_pending(tmp_path: Path) -> None:
    cache_path = tmp_path / "cache.sqlite"
    queue = await SQLiteQueue.open(tmp_path / "q.sqlite", CacheSpec(cache_path, "scope-a"))
    fingerprints = ["fp-x", "fp-x", "fp-y"]  # two identical requests in one commit
    await queue.enqueue(
        NewJob(id=f"job-{i}", fingerprint=fp, payload=b"{}", line=i)
        for i, fp in enumerate(fingerprints)
    )
    claimed = await queue.claim(3, now=1.0, lease_s=60.0)
    done = [
        Done(j.seq, j.id, j.fingerprint, 1, _body(i), 200, "r", 1, 2, 3.0, 1.0, 2.0, 2.0)
        for i, j in enumerate(claimed)
    ]
    with sqlite3.connect(tmp_path / "q.sqlite") as db:  # another writer holds the queue
        db.execute("BEGIN IMMEDIATE")
        await queue._call(queue._db.execute, "PRAGMA busy_timeout = 0")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await queue.commit(done, {})
        db.rollback()
    assert await queue.cached_results(["fp-x", "fp-y"]) == {}  # their jobs were not marked done
    await queue.close()
    assert _cache_rows(cache_path) == {}


async def test_pending_replies_are_written_without_another_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_queue, "_CACHE_FLUSH_S", 0.05)
    monkeypatch.setattr(sqlite_queue, "_CACHE_FLUSH_ROWS", 10**9)
    cache_path = tmp_path / "cache.sqlite"
    queue = await SQLiteQueue.open(tmp_path / "q.sqlite", CacheSpec(cache_path, "scope-a"))
    await _commit_fresh(queue, N)
    # an idle run (an outage, a long backoff) still shares its replies: wait for them
    deadline = asyncio.get_running_loop().time() + 60.0
    while _cache_rows(cache_path).get("scope-a", set()) != {f"fp-{i}" for i in range(N)}:
        assert asyncio.get_running_loop().time() < deadline, _cache_rows(cache_path)
        await asyncio.sleep(0.01)
    await queue.close()
