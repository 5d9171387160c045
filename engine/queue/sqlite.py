"""The SQLite backend of the work queue: one file in WAL mode, owned by one thread.

Every state change is one statement (claims: one `UPDATE … RETURNING` over a batch) or one
transaction over a batch (enqueue, commit of outcomes). The connection lives in one worker
thread, so each call is one hop off the event loop: callers batch.

Schema versions: 1 kept the PERSONA pipeline's personas, prompts and pairs in tables of their
own; 2 keeps every pipeline's data in `records` (a version-1 file is migrated on open, in one
transaction); 3 adds the Batch API's `batches` and `batch_jobs` (a job is in at most one open
batch: `batch_jobs.seq` is its primary key); 4 stores response bodies compressed
(`engine.queue.blobs`) with their dictionaries in `blob_dicts` (in the queue and in the cache;
bodies stored before stay readable as they are). The response cache's `responses` table is keyed
by (endpoint scope, fingerprint); the version-1 cache table `entries`, keyed by fingerprint
alone, is left in place and never read (its answers cannot be told apart by endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import zlib
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Self, TypeVar

import msgspec
import structlog

from engine.errors import StorageError
from engine.queue import CacheSpec, EnqueueConflict, Record, SchemaVersionError, failure_codes
from engine.queue.blobs import BlobCodec
from schemas.batches import BatchMember, BatchRow, batch_row_decoder, batch_row_encoder
from schemas.job import (
    CachedResult,
    ClaimedJob,
    Done,
    Failed,
    ModelUsage,
    NewJob,
    Outcome,
    QueueCounts,
    Released,
    Retry,
    Status,
    TerminalRow,
)

SCHEMA_VERSION = 4
_T = TypeVar("_T")
SHARDS = 64
_STATUSES = ", ".join(f"'{s.value}'" for s in Status)

# the jobs table's secondary indexes: built after the rows when a run is first enqueued (a sort
# of 635,577 rows, instead of as many B-tree inserts into each)
_JOB_INDEXES = {
    "jobs_ready": "CREATE INDEX jobs_ready ON jobs (status, seq, next_run_at)",
    "jobs_due": "CREATE INDEX jobs_due ON jobs (status, next_run_at)",
    "jobs_parent": "CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL",
}

# (id, line, line of its first occurrence) of the first input that repeats an id of its input
# with another request than that first occurrence's
_REPEATED_WITH_ANOTHER_REQUEST = """
WITH firsts AS (SELECT id, min(rowid) AS first FROM temp.incoming GROUP BY id HAVING count(*) > 1)
SELECT d.id, d.line, f.line FROM firsts
JOIN temp.incoming AS f ON f.rowid = firsts.first
JOIN temp.incoming AS d ON d.id = firsts.id AND d.rowid > firsts.first
WHERE d.fingerprint <> f.fingerprint
ORDER BY d.rowid LIMIT 1
"""

_SCHEMA_V1 = f"""
CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    shard             INTEGER NOT NULL,
    stage             TEXT NOT NULL,
    model             TEXT NOT NULL DEFAULT '',
    parent_id         TEXT,
    est_tokens        INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ({_STATUSES})),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_run_at       REAL NOT NULL DEFAULT 0,
    lease_until       REAL,
    fingerprint       TEXT NOT NULL,
    payload           BLOB NOT NULL,
    result            BLOB,
    error             BLOB,
    status_code       INTEGER,
    request_id        TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms        REAL,
    cached            INTEGER NOT NULL DEFAULT 0,
    first_started_at  REAL,
    finished_at       REAL
);
{";".join(_JOB_INDEXES.values())};
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_RECORDS = """
CREATE TABLE records (
    seq   INTEGER PRIMARY KEY,
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (kind, key)
)
"""

_BATCHES = (
    "CREATE TABLE batches (key TEXT PRIMARY KEY, state TEXT NOT NULL, row BLOB NOT NULL)",
    "CREATE TABLE batch_jobs (seq INTEGER PRIMARY KEY, batch_key TEXT NOT NULL, "
    "line INTEGER NOT NULL, custom_id TEXT NOT NULL, fingerprint TEXT NOT NULL)",
    "CREATE INDEX batch_jobs_key ON batch_jobs (batch_key, line)",
)
# dictionaries of the compressed bodies (engine.queue.blobs), in the queue and in the cache
_BLOB_DICTS = "CREATE TABLE {schema}blob_dicts (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"
_NOT_IN_BATCH = "AND seq NOT IN (SELECT seq FROM batch_jobs)"

# version 1 -> 2: the PERSONA tables become records (JSON values), in their insertion order
_V1_TO_V2 = (
    _RECORDS,
    "INSERT INTO records (kind, key, value) SELECT 'persona', id, "
    "CAST(json_object('id', id, 'text', text) AS BLOB) FROM personas ORDER BY rowid",
    "INSERT INTO records (kind, key, value) SELECT 'prompt', id, "
    "CAST(json_object('id', id, 'topic', topic, 'text', text) AS BLOB) FROM prompts ORDER BY rowid",
    "INSERT INTO records (kind, key, value) SELECT 'pair', persona_id || ':' || prompt_id, "
    "CAST(json_object('persona_id', persona_id, 'prompt_id', prompt_id, 'split', split) AS BLOB) "
    "FROM pairs ORDER BY rowid",
    "INSERT INTO meta (key, value) SELECT 'run.pipeline', 'persona' "
    "FROM meta WHERE key = 'graph.signature'",
    "DROP TABLE personas",
    "DROP TABLE prompts",
    "DROP TABLE pairs",
)

_CLAIM = """
UPDATE jobs SET status = 'running', lease_until = :lease
WHERE seq IN (
    SELECT seq FROM jobs INDEXED BY jobs_ready
    WHERE status = 'queued' AND next_run_at <= :now
    ORDER BY seq LIMIT :limit
)
RETURNING seq, id, stage, attempts, fingerprint, payload, first_started_at, model, est_tokens
"""

_DONE = """
UPDATE jobs SET status = 'done', attempts = ?, result = ?, status_code = ?,
    request_id = ?, prompt_tokens = ?, completion_tokens = ?, latency_ms = ?, cached = ?,
    first_started_at = coalesce(first_started_at, ?), finished_at = ?,
    lease_until = NULL, error = NULL
WHERE seq = ? AND status = 'running'
"""

_RETRY = """
UPDATE jobs SET status = 'queued', attempts = attempts + ?, next_run_at = ?, error = ?,
    first_started_at = coalesce(first_started_at, ?), lease_until = NULL
WHERE seq = ? AND status = 'running'
"""

_FAILED = """
UPDATE jobs SET status = 'failed', attempts = ?, error = ?, status_code = ?,
    request_id = ?, first_started_at = coalesce(first_started_at, ?), finished_at = ?,
    lease_until = NULL
WHERE seq = ? AND status = 'running'
"""

_RELEASED = "UPDATE jobs SET status = 'queued', lease_until = NULL WHERE seq = ?"

_REQUEUE_FAILED = """
UPDATE jobs SET status = 'queued', attempts = 0, next_run_at = 0, lease_until = NULL,
    finished_at = NULL
WHERE status = 'failed'
"""

_SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

_ROW_COLUMNS = """seq, id, status, attempts, result, error, status_code, request_id,
       prompt_tokens, completion_tokens, latency_ms, first_started_at, finished_at, cached, model"""
_TERMINAL = f"""
SELECT {_ROW_COLUMNS}
FROM jobs WHERE seq > ? AND status IN ('done', 'failed') ORDER BY seq LIMIT ?
"""

_FAILED_ROWS = f"""
SELECT {_ROW_COLUMNS}
FROM jobs WHERE seq > ? AND status = 'failed' ORDER BY seq LIMIT ?
"""

# `+kind`: walk the records by seq from `after` (a range of the primary key). On `kind` the
# planner takes the (kind, key) index and sorts every record of the kind for each chunk: an
# export of 317,200 pairs spent 64 ms a chunk there (1 ms by seq), two passes of 20 s.
RECORDS_CHUNK = (
    "SELECT seq, key, value FROM records WHERE +kind = ? AND seq > ? ORDER BY seq LIMIT ?"
)

_RELEASE_CHILDREN = "UPDATE jobs SET status = 'queued' WHERE parent_id = ? AND status = 'waiting'"

_CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache.responses (
    scope             TEXT NOT NULL,
    fingerprint       TEXT NOT NULL,
    result            BLOB NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at        REAL NOT NULL,
    PRIMARY KEY (scope, fingerprint)
)
"""
_CACHE_DICTS = _BLOB_DICTS.format(schema="IF NOT EXISTS cache.")
_CACHE_DICT_PUT = "INSERT OR IGNORE INTO cache.blob_dicts (id, data) VALUES (?, ?)"
_CACHE_PUT = (
    "INSERT OR IGNORE INTO cache.responses "
    "(scope, fingerprint, result, prompt_tokens, completion_tokens, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_IN_CHUNK = 5000  # ids per `IN (…)` (SQLite allows 32,766 variables)

# Fresh replies reach the shared cache in batches, sorted by key (with the commit that brings
# `_CACHE_FLUSH_ROWS` of them, `_CACHE_FLUSH_S` after a commit that left some, and at close):
# the cache is keyed by fingerprint (a hash), so every reply written by itself dirtied a page of
# the cache's index of its own, in every commit. Until its batch is written, a reply is served
# from memory to this run, and its job's seq is kept in `cache_pending` in the queue (in the
# transaction that marks the job done): a run that dies first has them written when its queue
# is next opened with a cache, under the scope recorded with them (`_PENDING_SCOPE`), never the
# next run's.
_CACHE_FLUSH_ROWS = 4096
_CACHE_FLUSH_S = 2.0
_PENDING_SCOPE = "cache.pending_scope"
_GET_META = "SELECT value FROM meta WHERE key = ?"
_CACHE_PENDING = "CREATE TABLE IF NOT EXISTS main.cache_pending (seq INTEGER PRIMARY KEY)"
_CACHE_RECOVER = """
INSERT OR IGNORE INTO cache.responses
    (scope, fingerprint, result, prompt_tokens, completion_tokens, created_at)
SELECT ?, j.fingerprint, j.result, j.prompt_tokens, j.completion_tokens, j.finished_at
FROM cache_pending p JOIN jobs j ON j.seq = p.seq
WHERE j.status = 'done' AND j.cached = 0 AND j.result IS NOT NULL
ORDER BY j.fingerprint
"""

_error_encoder = msgspec.json.Encoder()
log = structlog.get_logger()


def shard_of(job_id: str) -> int:
    return zlib.crc32(job_id.encode()) % SHARDS


class SQLiteQueue:
    """`engine.queue.WorkQueue` on one SQLite file.

    One thread owns the connection; every public call is one hop to it and runs whole
    (a transaction never interleaves with another call). Why not aiosqlite: it hops once per
    statement, so a commit of BEGIN + 3 batches + meta + COMMIT cost six hops, and statements
    of concurrent callers interleaved inside each other's transactions.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        codec: BlobCodec,
        path: Path,
        thread: ThreadPoolExecutor,
        scope: str | None,
    ) -> None:
        self._db = db
        self._codec = codec
        self._thread = thread
        self._scope = scope  # the cache scope; None: no cache
        self.path = path
        self._cache_path: Path | None = None
        # fresh replies not yet in the cache (fingerprint -> its `_CACHE_PUT` row)
        self._pending: dict[str, tuple[Any, ...]] = {}
        # a write of the pending replies 2 s after a commit leaves some, however idle the run
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, cache: CacheSpec | None = None) -> Self:
        """Open (creating or migrating if needed) the queue at `path`; with `cache`, attach
        the response cache shared by every run that names the same file."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-queue")
        loop = asyncio.get_running_loop()
        cache_path = cache.path if cache is not None else None
        try:
            db, codec = await loop.run_in_executor(thread, _connect, path, cache_path)
        except sqlite3.Error as exc:
            thread.shutdown(wait=False)
            raise _storage_error(exc, path, cache_path) or exc from None
        except BaseException:
            thread.shutdown(wait=False)
            raise
        queue = cls(db, codec, path, thread, cache.scope if cache is not None else None)
        queue._cache_path = cache_path
        if cache is not None:
            try:
                await queue._call(queue._recover_pending, cache.scope)
            except BaseException:
                await queue.close()
                raise
        return queue

    def _recover_pending(self, scope: str) -> None:
        """Write the replies a run that died left pending into the cache, under the scope they
        were answered in; from now on, pending replies are this process's (`scope`)."""
        with self._transaction() as db:
            recorded = self._scalar_sync(_GET_META, (_PENDING_SCOPE,))
            if recorded is not None:
                db.execute(_CACHE_RECOVER, (recorded,))
            db.execute("DELETE FROM cache_pending")  # (with no scope known: not written)
            if recorded != scope:
                db.executemany(_SET_META, [(_PENDING_SCOPE, scope)])

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            # "database or disk is full", a read-only file: one line naming the path, exit 5
            raise _storage_error(exc, self.path, self._cache_path) or exc from None

    async def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        try:
            if self._flush_task is not None:
                await self._flush_task
            await self._write_pending()
        finally:
            await self._call(self._db.close)
            self._thread.shutdown(wait=True)

    def _write_pending_later(self) -> None:
        self._flush_timer = None
        if self._flush_task is None or self._flush_task.done():  # (else: the next commit's)
            self._flush_task = asyncio.ensure_future(self._write_pending())

    async def _write_pending(self) -> None:
        try:
            await self._call(self._flush_pending)
        except (StorageError, sqlite3.Error) as exc:  # kept in `cache_pending` for the next open
            log.warning("cache.pending_not_written", replies=len(self._pending), error=str(exc))

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        with self._transaction() as db:
            self._put_pending(db)
        self._pending.clear()

    def _put_pending(self, db: sqlite3.Connection) -> None:
        """Every pending reply into the cache, in the caller's transaction (`_pending` is
        cleared by the caller once it commits)."""
        rows = sorted(self._pending.values(), key=_by_fingerprint)
        db.executemany(_CACHE_PUT, rows)
        db.execute("DELETE FROM cache_pending")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")  # may fail too (a full disk): then roll back as well
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    async def enqueue(
        self,
        jobs: Iterable[NewJob],
        records: Mapping[str, Iterable[Record]] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> int:
        return await self._call(self._enqueue, jobs, records or {}, dict(meta or {}))

    def _enqueue(
        self, jobs: Iterable[NewJob], records: Mapping[str, Iterable[Record]], meta: dict[str, str]
    ) -> int:
        try:
            with self._transaction() as db:
                first = db.execute("SELECT NOT EXISTS (SELECT 1 FROM jobs)").fetchone()[0]
                if first:
                    for name in _JOB_INDEXES:
                        db.execute(f"DROP INDEX {name}")
                for kind, items in records.items():
                    iterator = iter(items)
                    while chunk := list(islice(iterator, 5000)):
                        db.executemany(
                            "INSERT INTO records (kind, key, value) VALUES (?, ?, ?) "
                            "ON CONFLICT (kind, key) DO NOTHING",
                            [(kind, key, value) for key, value in chunk],
                        )
                if meta:
                    db.executemany(_SET_META, list(meta.items()))
                added, given = self._stage_and_insert(jobs)
                if added < given:  # an id given twice, or enqueued before: were they the same?
                    self._check_conflicts(against_earlier=not first)
                if first:
                    for statement in _JOB_INDEXES.values():
                        db.execute(statement)
        finally:
            self._db.execute("DROP TABLE IF EXISTS temp.incoming")
        return added

    def _stage_and_insert(self, jobs: Iterable[NewJob]) -> tuple[int, int]:
        """Insert new jobs; remember (id, line, fingerprint) of every input in case they are
        to be checked. Returns (jobs added, inputs given)."""
        db = self._db
        # appended to, not keyed: a key cost a B-tree insert at a random place per input (a
        # quarter of enqueueing the PERSONA graph), and is needed only when an input was not
        # added, which `_check_conflicts` then indexes for
        db.execute(
            "CREATE TEMP TABLE incoming (id TEXT NOT NULL, line INTEGER NOT NULL, "
            "fingerprint TEXT NOT NULL)"
        )
        added = given = 0
        iterator: Iterator[NewJob] = iter(jobs)
        while chunk := list(islice(iterator, 5000)):
            db.executemany(
                "INSERT INTO temp.incoming (id, line, fingerprint) VALUES (?, ?, ?)",
                [(j.id, j.line, j.fingerprint) for j in chunk],
            )
            given += len(chunk)
            added += db.executemany(
                "INSERT INTO jobs (id, shard, stage, model, est_tokens, fingerprint, payload, "
                "parent_id, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [
                    (
                        j.id,
                        shard_of(j.id),
                        j.stage,
                        j.model,
                        j.est_tokens,
                        j.fingerprint,
                        j.payload,
                        j.parent_id,
                        "queued" if j.parent_id is None else "waiting",
                    )
                    for j in chunk
                ],
            ).rowcount
        return added, given

    def _check_conflicts(self, *, against_earlier: bool) -> None:
        """The first input (in input order) that repeats an id of this input with another
        request; then (`against_earlier`: the queue held jobs before) the first id enqueued
        before with another request. Into an empty queue every job came from this input: the
        first check covers both."""
        self._db.execute("CREATE INDEX temp.incoming_id ON incoming (id)")
        row = self._db.execute(_REPEATED_WITH_ANOTHER_REQUEST).fetchone()
        if row is not None:
            raise EnqueueConflict(row[0], row[1], row[2])
        if not against_earlier:
            return
        row = self._db.execute(
            "SELECT i.id, i.line FROM temp.incoming AS i JOIN jobs AS j ON j.id = i.id "
            "WHERE j.fingerprint <> i.fingerprint ORDER BY i.rowid LIMIT 1"
        ).fetchone()
        if row is not None:
            raise EnqueueConflict(row[0], row[1], None)

    async def claim(self, limit: int, now: float, lease_s: float) -> list[ClaimedJob]:
        return await self._call(self._claim, limit, now, lease_s)

    def _claim(self, limit: int, now: float, lease_s: float) -> list[ClaimedJob]:
        with self._transaction() as db:
            rows = db.execute(_CLAIM, {"lease": now + lease_s, "now": now, "limit": limit})
            jobs = [ClaimedJob(*r) for r in rows]
        jobs.sort(key=lambda j: j.seq)
        return jobs

    async def commit(self, outcomes: Sequence[Outcome], meta: Mapping[str, str]) -> None:
        await self._call(self._commit, outcomes, dict(meta))
        if self._pending and self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(_CACHE_FLUSH_S, self._write_pending_later)

    def _commit(self, outcomes: Sequence[Outcome], meta: dict[str, str]) -> None:
        done, retry, failed, released, fresh, parents = _group(
            outcomes, self._scope, self._codec.encode
        )
        pending = self._pending
        added = {row[1]: row for row in fresh if row[1] not in pending}
        pending.update(added)
        due = len(pending) >= _CACHE_FLUSH_ROWS
        try:
            with self._transaction() as db:
                self._store_new_dictionary(db)
                _apply(db, (done, retry, failed, released, [], parents), meta)
                if due:
                    self._put_pending(db)
                elif fresh:
                    seqs = [(o.seq,) for o in outcomes if isinstance(o, Done) and not o.cached]
                    db.executemany("INSERT OR IGNORE INTO cache_pending (seq) VALUES (?)", seqs)
        except BaseException:
            for fingerprint in added:  # not committed: their jobs run again
                del pending[fingerprint]
            raise
        if due:
            pending.clear()

    def _store_new_dictionary(self, db: sqlite3.Connection) -> None:
        """A dictionary the codec trained while encoding this commit's bodies: stored in the
        same transaction as (before) the first bodies compressed with it."""
        if new_dictionary := self._codec.take_new_dictionary():
            db.execute("INSERT INTO blob_dicts (id, data) VALUES (?, ?)", new_dictionary)
            if self._scope is not None:
                db.execute(_CACHE_DICT_PUT, new_dictionary)

    async def batch_open(self, batch: BatchRow, members: Sequence[BatchMember]) -> None:
        rows = [(m.seq, batch.key, i, m.custom_id, m.fingerprint) for i, m in enumerate(members)]
        await self._call(self._batch_open, batch, rows)

    def _batch_open(self, batch: BatchRow, rows: _Rows) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO batches (key, state, row) VALUES (?, ?, ?)",
                (batch.key, batch.state.value, batch_row_encoder.encode(batch)),
            )
            db.executemany(
                "INSERT INTO batch_jobs (seq, batch_key, line, custom_id, fingerprint) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    async def batch_update(self, batch: BatchRow) -> None:
        await self._call(
            self._rowcount,
            "UPDATE batches SET state = ?, row = ? WHERE key = ?",
            (batch.state.value, batch_row_encoder.encode(batch), batch.key),
        )

    async def batches(self, include_closed: bool = False) -> list[BatchRow]:
        where = "" if include_closed else "WHERE state <> 'closed'"
        rows = await self._call(self._fetch, f"SELECT row FROM batches {where} ORDER BY key", ())
        return [batch_row_decoder.decode(r[0]) for r in rows]

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._db.execute(sql, params).fetchall()

    async def batch_members(self, key: str) -> list[tuple[ClaimedJob, str]]:
        rows = await self._call(
            self._fetch,
            "SELECT j.seq, j.id, j.stage, j.attempts, b.fingerprint, j.first_started_at, "
            "j.model, j.est_tokens, b.custom_id FROM batch_jobs AS b JOIN jobs AS j "
            "ON j.seq = b.seq WHERE b.batch_key = ? ORDER BY b.line",
            (key,),
        )
        return [
            (ClaimedJob(r[0], r[1], r[2], r[3], r[4], b"", r[5], r[6], r[7]), r[8]) for r in rows
        ]

    async def batch_settle(
        self, batch: BatchRow, outcomes: Sequence[Outcome], meta: Mapping[str, str]
    ) -> None:
        await self._call(self._batch_settle, batch, outcomes, dict(meta))

    def _batch_settle(
        self, batch: BatchRow, outcomes: Sequence[Outcome], meta: dict[str, str]
    ) -> None:
        groups = _group(outcomes, self._scope, self._codec.encode)
        with self._transaction() as db:
            db.execute("DELETE FROM batch_jobs WHERE batch_key = ?", (batch.key,))
            self._store_new_dictionary(db)
            _apply(db, groups, meta)
            db.execute(
                "UPDATE batches SET state = ?, row = ? WHERE key = ?",
                (batch.state.value, batch_row_encoder.encode(batch), batch.key),
            )

    async def cached_results(self, fingerprints: Sequence[str]) -> dict[str, CachedResult]:
        if self._scope is None or not fingerprints:
            return {}
        return await self._call(self._cached_results, self._scope, list(fingerprints))

    def _cached_results(self, scope: str, fingerprints: list[str]) -> dict[str, CachedResult]:
        marks = ", ".join("?" * len(fingerprints))
        rows = self._db.execute(
            "SELECT fingerprint, result, prompt_tokens, completion_tokens FROM cache.responses "
            f"WHERE scope = ? AND fingerprint IN ({marks})",
            [scope, *fingerprints],
        )
        found = {r[0]: CachedResult(self._decode(r[1]), r[2], r[3]) for r in rows}
        if self._pending:
            for fingerprint in fingerprints:
                row = self._pending.get(fingerprint)
                if row is not None and fingerprint not in found:
                    found[fingerprint] = CachedResult(self._decode(row[2]), row[3], row[4])
        return found

    async def done_rows(self, job_ids: Sequence[str]) -> dict[str, TerminalRow]:
        if not job_ids:
            return {}
        return await self._call(self._done_rows, list(job_ids))

    def _done_rows(self, job_ids: list[str]) -> dict[str, TerminalRow]:
        found: dict[str, TerminalRow] = {}
        for start in range(0, len(job_ids), _IN_CHUNK):
            chunk = job_ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            # `+status`: look rows up by id; the planner would otherwise scan the status index
            sql = f"SELECT {_ROW_COLUMNS} FROM jobs WHERE id IN ({marks}) AND +status = 'done'"
            for r in self._db.execute(sql, chunk):
                found[r[1]] = self._terminal_row(r)
        return found

    async def iter_records(self, kind: str, chunk: int = 2000) -> AsyncIterator[Record]:
        last = 0
        while rows := await self._call(self._records_chunk, kind, last, chunk):
            for _, key, value in rows:
                yield key, value
            last = rows[-1][0]

    def _records_chunk(self, kind: str, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        return self._db.execute(RECORDS_CHUNK, (kind, after, limit)).fetchall()

    async def renew(self, seqs: Sequence[int], lease_until: float) -> None:
        if seqs:
            await self._call(self._renew, list(seqs), lease_until)

    def _renew(self, seqs: list[int], lease_until: float) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET lease_until = ? WHERE seq = ? AND status = 'running'",
                [(lease_until, seq) for seq in seqs],
            )

    async def sweep(self, now: float) -> int:
        return await self._call(
            self._rowcount,
            "UPDATE jobs SET status = 'queued', lease_until = NULL "
            f"WHERE status = 'running' AND lease_until < ? {_NOT_IN_BATCH}",
            (now,),
        )

    async def reset_running(self) -> int:
        return await self._call(
            self._rowcount,
            f"UPDATE jobs SET status = 'queued', lease_until = NULL WHERE status = 'running' "
            f"{_NOT_IN_BATCH}",
            (),
        )

    def _rowcount(self, sql: str, params: tuple[Any, ...]) -> int:
        return self._db.execute(sql, params).rowcount

    async def requeue_failed(self, codes: Collection[str] = ()) -> int:
        return await self._call(self._requeue_failed, frozenset(codes))

    def _requeue_failed(self, codes: frozenset[str]) -> int:
        with self._transaction() as db:
            if not codes:
                return db.execute(_REQUEUE_FAILED).rowcount
            rows = db.execute("SELECT seq, error FROM jobs WHERE status = 'failed'").fetchall()
            picked = [(seq,) for seq, error in rows if failure_codes(error) & codes]
            return db.executemany(_REQUEUE_FAILED + " AND seq = ?", picked).rowcount

    async def has_running(self) -> bool:
        value = await self._scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'running')")
        return bool(value)

    async def next_due(self) -> float | None:
        value = await self._scalar("SELECT min(next_run_at) FROM jobs WHERE status = 'queued'")
        return None if value is None else float(value)

    async def counts(self) -> QueueCounts:
        return await self._call(self._counts)

    def _counts(self) -> QueueCounts:
        by_status: dict[str, int] = {}
        by_stage: dict[str, dict[str, int]] = {}
        totals = [0, 0, 0]
        first: float | None = None
        last: float | None = None
        for stage, status, n, att, pt, ct, f, la in self._db.execute(
            "SELECT stage, status, count(*), sum(attempts), sum(prompt_tokens), "
            "sum(completion_tokens), min(first_started_at), max(finished_at) "
            "FROM jobs GROUP BY stage, status"
        ):
            by_status[status] = by_status.get(status, 0) + n
            by_stage.setdefault(stage, {})[status] = n
            totals = [totals[0] + att, totals[1] + pt, totals[2] + ct]
            first = f if first is None or (f is not None and f < first) else first
            last = la if last is None or (la is not None and la > last) else last
        by_model = {
            model: ModelUsage(*rest)
            for model, *rest in self._db.execute(
                "SELECT model, count(*), sum(cached), sum(prompt_tokens), sum(completion_tokens), "
                "sum(prompt_tokens * (1 - cached)), sum(completion_tokens * (1 - cached)) "
                "FROM jobs WHERE status = 'done' GROUP BY model"
            )
        }
        next_due = self._db.execute(
            "SELECT min(next_run_at) FROM jobs WHERE status = 'queued'"
        ).fetchone()[0]
        return QueueCounts(
            by_status=by_status,
            by_stage=by_stage,
            attempts=totals[0],
            prompt_tokens=totals[1],
            completion_tokens=totals[2],
            first_started_at=first,
            last_finished_at=last,
            next_run_at=next_due,
            by_model=by_model,
        )

    async def iter_terminal(
        self, chunk: int = 2000, *, failed_only: bool = False
    ) -> AsyncIterator[TerminalRow]:
        last = 0
        sql = _FAILED_ROWS if failed_only else _TERMINAL
        while rows := await self._call(self._terminal_chunk, sql, last, chunk):
            for row in rows:
                yield row
            last = rows[-1].seq

    def _terminal_chunk(self, sql: str, after: int, limit: int) -> list[TerminalRow]:
        return [self._terminal_row(r) for r in self._db.execute(sql, (after, limit))]

    def _terminal_row(self, r: Sequence[Any]) -> TerminalRow:
        return _terminal_row(r, None if r[4] is None else self._decode(r[4]))

    def _decode(self, stored: bytes) -> bytes:
        try:
            return self._codec.decode(stored)
        except LookupError:
            # a dictionary another writer of the shared cache stored after this file was opened
            for _, data in _stored_dictionaries(self._db, self._scope is not None):
                self._codec.add_dictionary(data)
            return self._codec.decode(stored)

    async def get_meta(self, key: str) -> str | None:
        value = await self._scalar(_GET_META, (key,))
        return None if value is None else str(value)

    async def set_meta(self, values: Mapping[str, str]) -> None:
        await self._call(self._set_meta, dict(values))

    def _set_meta(self, values: dict[str, str]) -> None:
        with self._transaction() as db:
            db.executemany(_SET_META, list(values.items()))

    async def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return await self._call(self._scalar_sync, sql, params)

    def _scalar_sync(self, sql: str, params: tuple[Any, ...]) -> Any:
        row = self._db.execute(sql, params).fetchone()
        return None if row is None else row[0]


_WAL_PAGES = 4000


def _connect(path: Path, cache_path: Path | None) -> tuple[sqlite3.Connection, BlobCodec]:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA busy_timeout = 10000")
        # 16 MiB of pages: a run loop at 64 MiB spent the same CPU (2 alternating pairs, 41,177
        # calls), and an export of 317,200 pairs, reading by id, filled all of 64
        db.execute("PRAGMA cache_size = -16384")
        # a checkpoint every 4,000 WAL pages (16 MiB) rather than SQLite's 1,000, for the queue
        # and the attached cache alike (the setting is the connection's): a page that
        # many commits touch (the jobs' rows, the cache's index) is copied back once per
        # checkpoint. 50,000 zero-latency calls, 3 alternating rounds: 6.4-6.9 s wall and
        # 5.9-6.4 s CPU against 7.1-7.8 s and 6.5-7.1 s (20,000 pages: no better than 4,000)
        db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_PAGES}")
        _migrate(db, path)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            db.execute("ATTACH DATABASE ? AS cache", (str(cache_path),))
            db.execute("PRAGMA cache.journal_mode = WAL")
            # as the queue: no fsync per commit (a PRAGMA applies to one schema, and an attached
            # database would otherwise sync its WAL on every commit: synchronous = FULL)
            db.execute("PRAGMA cache.synchronous = NORMAL")
            db.execute(_CACHE_SCHEMA)
            db.execute(_CACHE_DICTS)
            db.execute(_CACHE_PENDING)
        codec = _codec_of(db, cache_path is not None)
    except BaseException:
        db.close()
        raise
    return db, codec


def _codec_of(db: sqlite3.Connection, attached_cache: bool) -> BlobCodec:
    """The codec of this queue: its own dictionaries (the last one compresses), and the
    cache's (read only); the queue's dictionaries are copied into an attached cache, which
    stores bodies compressed with them."""
    own = db.execute("SELECT id, data FROM blob_dicts ORDER BY rowid").fetchall()
    codec = BlobCodec(own)
    if attached_cache:
        db.executemany(_CACHE_DICT_PUT, own)
        for _, data in _stored_dictionaries(db, attached_cache):
            codec.add_dictionary(data)
    return codec


def _stored_dictionaries(db: sqlite3.Connection, attached_cache: bool) -> list[tuple[int, bytes]]:
    rows = db.execute("SELECT id, data FROM blob_dicts").fetchall()
    if attached_cache:
        rows += db.execute("SELECT id, data FROM cache.blob_dicts").fetchall()
    return rows


#: SQLite primary result codes that mean the filesystem refused a write
_STORAGE_CODES = {
    sqlite3.SQLITE_FULL: errno.ENOSPC,
    sqlite3.SQLITE_READONLY: errno.EROFS,
    sqlite3.SQLITE_CANTOPEN: errno.EACCES,
    sqlite3.SQLITE_IOERR: errno.ENOSPC,  # a failed write of the WAL or the journal
}


def _storage_error(exc: sqlite3.Error, path: Path, cache: Path | None) -> StorageError | None:
    """The StorageError a SQLite error means, naming the queue or the cache file (the one
    whose filesystem has less room: one transaction writes both), or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or (code & 0xFF) not in _STORAGE_CODES:
        return None
    errno_of = _STORAGE_CODES[code & 0xFF]
    blamed = path
    if cache is not None and _free_bytes(cache) < _free_bytes(path):
        blamed = cache
    free = _free_bytes(blamed)
    if free < 0:
        errno_of = errno.EROFS
    elif (code & 0xFF) == sqlite3.SQLITE_IOERR and free > _NEARLY_FULL:
        return None  # an I/O error on a disk with room: not ours to explain
    return StorageError(blamed, errno_of)


_NEARLY_FULL = 1 << 20  # an I/O error with less than this free is taken for a full disk


def _free_bytes(path: Path) -> int:
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return 0
    if stat.f_flag & os.ST_RDONLY:
        return -1
    return stat.f_bavail * stat.f_frsize


def _terminal_row(r: Sequence[Any], result: bytes | None) -> TerminalRow:
    return TerminalRow(
        seq=r[0],
        id=r[1],
        status=Status(r[2]),
        attempts=r[3],
        result=result,
        error=r[5],
        status_code=r[6],
        request_id=r[7],
        prompt_tokens=r[8],
        completion_tokens=r[9],
        latency_ms=r[10],
        first_started_at=r[11],
        finished_at=r[12],
        cached=bool(r[13]),
        model=r[14],
    )


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: queue schema version {version} is newer than this engine's "
            f"({SCHEMA_VERSION}); upgrade persona-testbed"
        )
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        statements = [s for s in _SCHEMA_V1.split(";") if s.strip()] + [_RECORDS]
    elif version == 1:
        statements = list(_V1_TO_V2)
    else:
        statements = []
    if version < 3:  # version 3 added the Batch API tables
        statements += _BATCHES
    if version < 4:  # version 4: compressed bodies and their dictionaries
        statements.append(_BLOB_DICTS.format(schema="IF NOT EXISTS "))
    # Not executescript (it commits on its own): one transaction, so a crash here leaves the
    # file as it was.
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_Rows = list[tuple[Any, ...]]
_Groups = tuple[_Rows, _Rows, _Rows, _Rows, _Rows, _Rows]


def _by_fingerprint(row: tuple[Any, ...]) -> str:
    return str(row[1])


def _apply(db: sqlite3.Connection, groups: _Groups, meta: dict[str, str]) -> None:
    """The statements of a commit of outcomes, inside the caller's transaction."""
    done, retry, failed, released, fresh, parents = groups
    if fresh:
        db.executemany(_CACHE_PUT, fresh)
    for sql, rows in ((_DONE, done), (_RETRY, retry), (_FAILED, failed)):
        if rows:
            db.executemany(sql, rows)
    if released:
        db.executemany(_RELEASED, released)
    if meta:
        db.executemany(_SET_META, list(meta.items()))
    if parents:
        db.executemany(_RELEASE_CHILDREN, parents)


def _group(
    outcomes: Sequence[Outcome], scope: str | None, encode: Callable[[bytes], bytes]
) -> _Groups:
    done: _Rows = []
    retry: _Rows = []
    failed: _Rows = []
    released: _Rows = []
    fresh: _Rows = []  # results to remember in the cache
    parents: _Rows = []  # done jobs whose waiting children become runnable
    for o in outcomes:
        match o:
            case Done():
                body = encode(o.body)
                done.append(_done_row(o, body))
                parents.append((o.job_id,))
                if not o.cached and scope is not None:
                    fresh.append(
                        (
                            scope,
                            o.fingerprint,
                            body,
                            o.prompt_tokens,
                            o.completion_tokens,
                            o.finished_at,
                        )
                    )
            case Retry():
                error = _error_encoder.encode(o.error)
                retry.append((int(o.spend_attempt), o.next_run_at, error, o.started_at, o.seq))
            case Failed():
                error = _error_encoder.encode(o.error)
                row = (
                    o.attempts,
                    error,
                    o.error.status_code,
                    o.request_id,
                    o.first_started_at,
                    o.finished_at,
                    o.seq,
                )
                failed.append(row)
            case Released():
                released.append((o.seq,))
    return done, retry, failed, released, fresh, parents


def _done_row(o: Done, body: bytes) -> tuple[Any, ...]:
    return (
        o.attempts,
        body,
        o.status_code,
        o.request_id,
        o.prompt_tokens,
        o.completion_tokens,
        o.latency_ms,
        int(o.cached),
        o.first_started_at,
        o.finished_at,
        o.seq,
    )
