"""The PostgreSQL backend of the work queue: one database holds one run, shared by many
worker processes on many hosts.

Why asyncpg, not psycopg 3: the queue's hot statements pass whole batches as arrays
(`unnest($1::bigint[], …)`), which asyncpg sends in the binary protocol. Measured with
`python docs/pg_driver_choice.py` (claim 256 with SKIP LOCKED + one batched UPDATE of their
results, 51,200 jobs, two rounds each, 2026-12-01): asyncpg 14,189 and 15,848 jobs/s,
psycopg 3.3 9,348 and 9,390: 1.5-1.7x (bench/README.md, section (h)).

Every operation is one statement or one transaction, written once below (`_SQL_…`). Claims
take a batch with `FOR UPDATE SKIP LOCKED` (workers never wait on each other's rows) and stamp
a lease and this process's owner id; an outcome is recorded only while this process still
owns the job (`owner = $1`), so a job whose lease expired and was taken by another worker is
completed once, by whoever commits first while owning it. The response cache is a table of
the same database, shared by every worker. The schema is created (in one transaction, under
an advisory lock, so hosts starting together do not race) and versioned by the engine.

Connection strings may hold a password: every message names the database by `redact(url)`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from itertools import islice
from typing import Any, Self, TypeVar, Union
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import structlog

from engine.errors import SettingsError
from engine.queue import CacheSpec, EnqueueConflict, Record, SchemaVersionError, failure_codes
from schemas.batches import BatchMember, BatchRow, batch_row_decoder, batch_row_encoder
from schemas.fleet import WorkerRow
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

SCHEMA_VERSION = 1
_T = TypeVar("_T")
log = structlog.get_logger()
#: a lost connection, a server restarting or shutting down: worth another try
TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
SCHEMES = ("postgresql", "postgres")
_CHUNK = 5000  # rows per array parameter while enqueueing
_SCHEMA_LOCK = 0x7065_7273_6F6E  # pg_advisory_xact_lock key of schema creation ("person")
_STATUSES = ", ".join(f"'{s.value}'" for s in Status)
_error_encoder = msgspec.json.Encoder()
#: a connection as the pool hands it out
_Db = Union[
    "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]", "asyncpg.Connection[asyncpg.Record]"
]

# -- schema ------------------------------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE schema_info (version integer NOT NULL)",
    f"""CREATE TABLE jobs (
        seq               bigserial PRIMARY KEY,
        id                text NOT NULL UNIQUE,
        stage             text NOT NULL,
        model             text NOT NULL DEFAULT '',
        parent_id         text,
        est_tokens        integer NOT NULL DEFAULT 0,
        status            text NOT NULL DEFAULT 'queued' CHECK (status IN ({_STATUSES})),
        attempts          integer NOT NULL DEFAULT 0,
        next_run_at       double precision NOT NULL DEFAULT 0,
        lease_until       double precision,
        owner             text,
        fingerprint       text NOT NULL,
        payload           bytea NOT NULL,
        result            bytea,
        error             bytea,
        status_code       integer,
        request_id        text,
        prompt_tokens     integer NOT NULL DEFAULT 0,
        completion_tokens integer NOT NULL DEFAULT 0,
        latency_ms        double precision,
        cached            boolean NOT NULL DEFAULT false,
        first_started_at  double precision,
        finished_at       double precision,
        finished_by       text
    )""",
    "CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued'",
    "CREATE INDEX jobs_running ON jobs (lease_until) WHERE status = 'running'",
    "CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL",
    "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE records (
        seq   bigserial PRIMARY KEY,
        kind  text NOT NULL,
        key   text NOT NULL,
        value bytea NOT NULL,
        UNIQUE (kind, key)
    )""",
    """CREATE TABLE responses (
        scope             text NOT NULL,
        fingerprint       text NOT NULL,
        result            bytea NOT NULL,
        prompt_tokens     integer NOT NULL,
        completion_tokens integer NOT NULL,
        created_at        double precision NOT NULL,
        PRIMARY KEY (scope, fingerprint)
    )""",
    "CREATE TABLE batches (key text PRIMARY KEY, state text NOT NULL, row bytea NOT NULL)",
    """CREATE TABLE batch_jobs (
        seq         bigint PRIMARY KEY,
        batch_key   text NOT NULL,
        line        integer NOT NULL,
        custom_id   text NOT NULL,
        fingerprint text NOT NULL
    )""",
    "CREATE INDEX batch_jobs_key ON batch_jobs (batch_key, line)",
    """CREATE TABLE workers (
        id           text PRIMARY KEY,
        host         text NOT NULL,
        pid          integer NOT NULL,
        concurrency  integer NOT NULL,
        started_at   double precision NOT NULL,
        heartbeat_at double precision NOT NULL,
        stopped_at   double precision,
        jobs_done    bigint NOT NULL DEFAULT 0
    )""",
)
_OUR_TABLES = (
    "schema_info", "jobs", "meta", "records", "responses", "batches", "batch_jobs", "workers",
)  # fmt: skip

# -- enqueue -----------------------------------------------------------------------------------

_SQL_INCOMING = (
    "CREATE TEMP TABLE incoming (id text NOT NULL, line integer NOT NULL, "
    "fingerprint text NOT NULL) ON COMMIT DROP"
)
_SQL_STAGE = (
    "INSERT INTO incoming (id, line, fingerprint) "
    "SELECT * FROM unnest($1::text[], $2::integer[], $3::text[])"
)
_SQL_INSERT_JOBS = """
INSERT INTO jobs (id, stage, model, est_tokens, fingerprint, payload, parent_id, status)
SELECT id, stage, model, est_tokens, fingerprint, payload, parent_id,
       CASE WHEN parent_id IS NULL THEN 'queued' ELSE 'waiting' END
FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::bytea[],
            $7::text[]) WITH ORDINALITY
     AS u(id, stage, model, est_tokens, fingerprint, payload, parent_id, n)
ORDER BY n
ON CONFLICT (id) DO NOTHING
"""
_SQL_INSERT_RECORDS = """
INSERT INTO records (kind, key, value)
SELECT $1, key, value FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS u(key, value, n)
ORDER BY n
ON CONFLICT (kind, key) DO NOTHING
"""
# the same id twice in one input with different bodies: (id, the later line, the first line)
_SQL_CONFLICT_IN_INPUT = """
SELECT later.id, later.line, first.line
FROM (SELECT DISTINCT ON (id) id, line, fingerprint FROM incoming ORDER BY id, line) AS first
JOIN incoming AS later ON later.id = first.id AND later.line > first.line
WHERE later.fingerprint <> first.fingerprint
ORDER BY later.line LIMIT 1
"""
_SQL_CONFLICT_WITH_QUEUE = """
SELECT i.id, i.line FROM incoming AS i JOIN jobs AS j ON j.id = i.id
WHERE j.fingerprint <> i.fingerprint ORDER BY i.line LIMIT 1
"""

# -- claim and commit --------------------------------------------------------------------------

_SQL_CLAIM = """
UPDATE jobs SET status = 'running', lease_until = $3, owner = $4
WHERE seq IN (
    SELECT seq FROM jobs WHERE status = 'queued' AND next_run_at <= $1
    ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED
)
RETURNING seq, id, stage, attempts, fingerprint, payload, first_started_at, model, est_tokens
"""
# The jobs of a claim whose answer was lost with its connection (the UPDATE committed, the
# rows never arrived): still this process's, with the lease that claim gave them. Without this
# they would wait out their lease before the sweep returned them.
_SQL_CLAIMED_BEFORE = """
SELECT seq, id, stage, attempts, fingerprint, payload, first_started_at, model, est_tokens
FROM jobs WHERE status = 'running' AND owner = $1 AND lease_until = $2
"""
# Done rows, then their waiting children released, in one statement; returns how many jobs
# this process finished (a job it no longer owns is left to its owner).
_SQL_DONE = """
WITH u AS (
    SELECT * FROM unnest($2::bigint[], $3::integer[], $4::bytea[], $5::integer[], $6::text[],
                         $7::integer[], $8::integer[], $9::double precision[], $10::boolean[],
                         $11::double precision[], $12::double precision[])
    AS u(seq, attempts, result, status_code, request_id, prompt_tokens, completion_tokens,
         latency_ms, cached, first_started_at, finished_at)
), done AS (
    UPDATE jobs AS j SET status = 'done', attempts = u.attempts, result = u.result,
        status_code = u.status_code, request_id = u.request_id,
        prompt_tokens = u.prompt_tokens, completion_tokens = u.completion_tokens,
        latency_ms = u.latency_ms, cached = u.cached,
        first_started_at = coalesce(j.first_started_at, u.first_started_at),
        finished_at = u.finished_at, lease_until = NULL, owner = NULL, error = NULL,
        finished_by = $1
    FROM u WHERE j.seq = u.seq AND j.status = 'running' AND j.owner = $1
    RETURNING j.id
), children AS (
    UPDATE jobs SET status = 'queued'
    WHERE status = 'waiting' AND parent_id IN (SELECT id FROM done)
    RETURNING 1
)
SELECT count(*) FROM done
"""
_SQL_RETRY = """
UPDATE jobs AS j SET status = 'queued', attempts = j.attempts + u.spend,
    next_run_at = u.next_run_at, error = u.error,
    first_started_at = coalesce(j.first_started_at, u.started_at),
    lease_until = NULL, owner = NULL
FROM unnest($2::bigint[], $3::integer[], $4::double precision[], $5::bytea[],
            $6::double precision[]) AS u(seq, spend, next_run_at, error, started_at)
WHERE j.seq = u.seq AND j.status = 'running' AND j.owner = $1
"""
_SQL_FAILED = """
UPDATE jobs AS j SET status = 'failed', attempts = u.attempts, error = u.error,
    status_code = u.status_code, request_id = u.request_id,
    first_started_at = coalesce(j.first_started_at, u.first_started_at),
    finished_at = u.finished_at, lease_until = NULL, owner = NULL, finished_by = $1
FROM unnest($2::bigint[], $3::integer[], $4::bytea[], $5::integer[], $6::text[],
            $7::double precision[], $8::double precision[])
     AS u(seq, attempts, error, status_code, request_id, first_started_at, finished_at)
WHERE j.seq = u.seq AND j.status = 'running' AND j.owner = $1
"""
# Every statement that updates several jobs rows locks them in seq order (claims and the sweep
# skip what is locked): two transactions that lock rows in different orders, e.g. a worker's
# commit and its own lease renewal on another connection, deadlock. A commit's statements
# touch the rows in several passes, so it locks them all first, in one ordered pass.
_SQL_LOCK_OWN = """
SELECT seq FROM jobs WHERE seq = ANY($2::bigint[]) AND status = 'running' AND owner = $1
ORDER BY seq FOR UPDATE
"""
_SQL_RELEASED = """
UPDATE jobs SET status = 'queued', lease_until = NULL, owner = NULL
WHERE seq = ANY($2::bigint[]) AND status = 'running' AND owner = $1
"""
_SQL_CACHE_PUT = """
INSERT INTO responses (scope, fingerprint, result, prompt_tokens, completion_tokens, created_at)
SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::integer[], $5::integer[],
                         $6::double precision[])
ON CONFLICT (scope, fingerprint) DO NOTHING
"""
_SQL_CACHE_GET = """
SELECT fingerprint, result, prompt_tokens, completion_tokens FROM responses
WHERE scope = $1 AND fingerprint = ANY($2::text[])
"""
_SQL_SET_META = """
INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""
_SQL_COUNT_FINISHED = "UPDATE workers SET jobs_done = jobs_done + $2 WHERE id = $1"

# -- leases ------------------------------------------------------------------------------------

_SQL_RENEW = f"""
UPDATE jobs SET lease_until = $3 WHERE seq IN ({_SQL_LOCK_OWN})
"""
# jobs in an open Batch API batch stay RUNNING until the batch is collected (engine.batch)
_NOT_IN_BATCH = "AND seq NOT IN (SELECT seq FROM batch_jobs)"
# rows locked by a commit or a renewal in progress are left to the next sweep
_SQL_SWEEP = f"""
UPDATE jobs SET status = 'queued', lease_until = NULL, owner = NULL
WHERE seq IN (
    SELECT seq FROM jobs WHERE status = 'running' AND lease_until < $1 {_NOT_IN_BATCH}
    ORDER BY seq FOR UPDATE SKIP LOCKED
)
"""
_SQL_RESET_RUNNING = f"""
UPDATE jobs SET status = 'queued', lease_until = NULL, owner = NULL
WHERE seq IN (
    SELECT seq FROM jobs WHERE status = 'running' {_NOT_IN_BATCH} ORDER BY seq FOR UPDATE
)
"""
_SQL_REQUEUE_FAILED = """
UPDATE jobs SET status = 'queued', attempts = 0, next_run_at = 0, lease_until = NULL,
    owner = NULL, finished_at = NULL, finished_by = NULL
WHERE status = 'failed'
"""
_SQL_FAILED_ERRORS = "SELECT seq, error FROM jobs WHERE status = 'failed'"

# -- Batch API bookkeeping (engine.batch) ------------------------------------------------------

_SQL_BATCH_INSERT = "INSERT INTO batches (key, state, row) VALUES ($1, $2, $3)"
_SQL_BATCH_MEMBERS_INSERT = """
INSERT INTO batch_jobs (seq, batch_key, line, custom_id, fingerprint)
SELECT seq, $1, line, custom_id, fingerprint
FROM unnest($2::bigint[], $3::integer[], $4::text[], $5::text[])
     AS u(seq, line, custom_id, fingerprint)
"""
_SQL_BATCH_UPDATE = "UPDATE batches SET state = $2, row = $3 WHERE key = $1"
_SQL_BATCHES_OPEN = "SELECT row FROM batches WHERE state <> 'closed' ORDER BY key"
_SQL_BATCHES_ALL = "SELECT row FROM batches ORDER BY key"
_SQL_BATCH_MEMBERS = """
SELECT j.seq, j.id, j.stage, j.attempts, b.fingerprint, j.first_started_at, j.model,
       j.est_tokens, b.custom_id
FROM batch_jobs AS b JOIN jobs AS j ON j.seq = b.seq WHERE b.batch_key = $1 ORDER BY b.line
"""
# a batch may be collected by another process than the one that opened it (after a crash):
# the collector takes its members over, so that their outcomes are its to record
_SQL_BATCH_ADOPT = """
UPDATE jobs SET owner = $2 WHERE seq IN (
    SELECT seq FROM jobs WHERE seq IN (SELECT seq FROM batch_jobs WHERE batch_key = $1)
    ORDER BY seq FOR UPDATE
)
"""
_SQL_BATCH_FREE = "DELETE FROM batch_jobs WHERE batch_key = $1"

# -- reads -------------------------------------------------------------------------------------

_ROW_COLUMNS = """seq, id, status, attempts, result, error, status_code, request_id,
       prompt_tokens, completion_tokens, latency_ms, first_started_at, finished_at, cached, model"""
_SQL_TERMINAL = f"""
SELECT {_ROW_COLUMNS} FROM jobs
WHERE seq > $1 AND status IN ('done', 'failed') ORDER BY seq LIMIT $2
"""
_SQL_FAILED_ROWS = f"""
SELECT {_ROW_COLUMNS} FROM jobs WHERE seq > $1 AND status = 'failed' ORDER BY seq LIMIT $2
"""
_SQL_DONE_ROWS = f"SELECT {_ROW_COLUMNS} FROM jobs WHERE id = ANY($1::text[]) AND status = 'done'"
_SQL_RECORDS = """
SELECT seq, key, value FROM records WHERE kind = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""
_SQL_HAS_RUNNING = "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'running')"
_SQL_NEXT_DUE = "SELECT min(next_run_at) FROM jobs WHERE status = 'queued'"
_SQL_COUNTS_BY_STAGE = """
SELECT stage, status, count(*), sum(attempts)::bigint, sum(prompt_tokens)::bigint,
       sum(completion_tokens)::bigint, min(first_started_at), max(finished_at)
FROM jobs GROUP BY stage, status
"""
_SQL_COUNTS_BY_MODEL = """
SELECT model, count(*), sum(cached::integer)::bigint, sum(prompt_tokens)::bigint,
       sum(completion_tokens)::bigint,
       sum(CASE WHEN cached THEN 0 ELSE prompt_tokens END)::bigint,
       sum(CASE WHEN cached THEN 0 ELSE completion_tokens END)::bigint
FROM jobs WHERE status = 'done' GROUP BY model
"""
_SQL_GET_META = "SELECT value FROM meta WHERE key = $1"

# -- workers (the fleet) -----------------------------------------------------------------------

_SQL_REGISTER = """
INSERT INTO workers (id, host, pid, concurrency, started_at, heartbeat_at)
VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (id) DO NOTHING
"""
_SQL_HEARTBEAT = "UPDATE workers SET heartbeat_at = $2 WHERE id = $1"
_SQL_LIVE_WORKERS = """
SELECT count(*) FROM workers WHERE stopped_at IS NULL AND heartbeat_at >= $1
"""
_SQL_STOPPED = "UPDATE workers SET stopped_at = $2, heartbeat_at = $2 WHERE id = $1"
_SQL_WORKERS = """
SELECT id, host, pid, concurrency, started_at, heartbeat_at, stopped_at, jobs_done
FROM workers ORDER BY started_at, id
"""


def is_postgres_url(text: str) -> bool:
    return urlsplit(text).scheme in SCHEMES


def redact(url: str) -> str:
    """`url` with its password (if any) replaced: the form every message and log shows."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<a database URL that does not parse>"
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _scrub(message: str, url: str) -> str:
    """A driver's message with the URL's password removed, should it ever repeat it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return message
    return message.replace(password, "***") if password else message


class PostgresQueue:
    """`engine.queue.WorkQueue` on one PostgreSQL database (a pool of connections: the
    feeder's claims, the writer's commits and the lease upkeep run concurrently)."""

    def __init__(self, pool: asyncpg.Pool, url: str, scope: str | None) -> None:
        self._pool = pool
        self._scope = scope  # the cache scope; None: no cache
        self.url = redact(url)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        #: this process's claims are stamped with it; only it may record their outcomes
        self.owner = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
        self._registered = False
        self._url = url  # for scrubbing the password out of driver messages only
        #: how long an operation is retried while the database cannot be reached
        self.retry_s = 60.0

    @classmethod
    async def open(cls, url: str, cache: CacheSpec | None = None) -> Self:
        """Connect to the run's database (creating the schema if it has none); with `cache`,
        answers are shared under `cache.scope` in the same database (`cache.path` unused)."""
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=4, timeout=15)
        except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
            reason = _scrub(str(exc) or type(exc).__name__, url)
            raise SettingsError(
                f"cannot connect to the queue database {redact(url)}: {reason}"
            ) from None
        queue = cls(pool, url, cache.scope if cache is not None else None)
        try:
            await queue._migrate()
        except BaseException:
            await pool.close()
            raise
        return queue

    async def _migrate(self) -> None:
        async with self._pool.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            tables = {
                r[0]
                for r in await db.fetch(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            }
            if "schema_info" in tables:
                version = await db.fetchval("SELECT max(version) FROM schema_info")
                if version is not None and version > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"{self.url}: queue schema version {version} is newer than this "
                        f"engine's ({SCHEMA_VERSION}); upgrade persona-testbed"
                    )
                return
            foreign = sorted(tables & set(_OUR_TABLES))
            if foreign:
                raise SettingsError(
                    f"{self.url}: the database has tables ({', '.join(foreign)}) that this "
                    "engine did not create: give it a database of its own"
                )
            for statement in _SCHEMA:
                await db.execute(statement)
            await db.execute("INSERT INTO schema_info (version) VALUES ($1)", SCHEMA_VERSION)

    async def close(self) -> None:
        await self._pool.close()

    # -- enqueue --------------------------------------------------------------------------

    async def enqueue(
        self,
        jobs: Iterable[NewJob],
        records: Mapping[str, Iterable[Record]] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> int:
        added = 0
        async with self._pool.acquire() as db, db.transaction():
            for kind, items in (records or {}).items():
                iterator = iter(items)
                while rchunk := list(islice(iterator, _CHUNK)):
                    keys, values = zip(*rchunk, strict=True)
                    await db.execute(_SQL_INSERT_RECORDS, kind, list(keys), list(values))
            if meta:
                await _set_meta(db, meta)
            await db.execute(_SQL_INCOMING)
            source: Iterator[NewJob] = iter(jobs)
            while chunk := list(islice(source, _CHUNK)):
                ids = [j.id for j in chunk]
                fingerprints = [j.fingerprint for j in chunk]
                await db.execute(_SQL_STAGE, ids, [j.line for j in chunk], fingerprints)
                status = await db.execute(
                    _SQL_INSERT_JOBS,
                    ids,
                    [j.stage for j in chunk],
                    [j.model for j in chunk],
                    [j.est_tokens for j in chunk],
                    fingerprints,
                    [j.payload for j in chunk],
                    [j.parent_id for j in chunk],
                )
                added += int(status.rsplit(" ", 1)[1])
            await db.execute("CREATE INDEX ON incoming (id)")
            row = await db.fetchrow(_SQL_CONFLICT_IN_INPUT)
            if row is not None:
                raise EnqueueConflict(row[0], row[1], row[2])
            row = await db.fetchrow(_SQL_CONFLICT_WITH_QUEUE)
            if row is not None:
                raise EnqueueConflict(row[0], row[1], None)
        return added

    # -- claim and commit -----------------------------------------------------------------

    async def claim(self, limit: int, now: float, lease_s: float) -> list[ClaimedJob]:
        tries = 0

        def once() -> Awaitable[list[ClaimedJob]]:
            nonlocal tries
            tries += 1
            return self._claim(limit, now, lease_s, again=tries > 1)

        return await self._again("claim", once)

    async def _claim(
        self, limit: int, now: float, lease_s: float, *, again: bool = False
    ) -> list[ClaimedJob]:
        """Claim up to `limit` jobs. `again`: an earlier try of this claim lost its connection,
        perhaps after its UPDATE committed: the jobs it leased (this owner, this claim's
        lease_until) are this claim's answer."""
        async with self._pool.acquire() as db:
            rows = []
            if again:
                rows = await db.fetch(_SQL_CLAIMED_BEFORE, self.owner, now + lease_s)
            if not rows:
                rows = await db.fetch(_SQL_CLAIM, now, limit, now + lease_s, self.owner)
        jobs = [ClaimedJob(*r) for r in rows]
        jobs.sort(key=lambda j: j.seq)
        return jobs

    async def commit(self, outcomes: Sequence[Outcome], meta: Mapping[str, str]) -> None:
        return await self._again("commit", lambda: self._commit(outcomes, meta))

    async def _commit(self, outcomes: Sequence[Outcome], meta: Mapping[str, str]) -> None:
        async with self._pool.acquire() as db, db.transaction():
            await self._apply(db, outcomes, meta)

    async def _apply(self, db: _Db, outcomes: Sequence[Outcome], meta: Mapping[str, str]) -> None:
        """Record outcomes (of jobs this process owns) and meta values, inside a transaction."""
        done, retry, failed, released = _group(outcomes)
        if outcomes:  # this transaction's row locks, taken in seq order before any update
            await db.execute(_SQL_LOCK_OWN, self.owner, sorted(o.seq for o in outcomes))
        finished = 0
        if done:
            await self._cache_put(db, done)
            finished += await db.fetchval(_SQL_DONE, self.owner, *_done_columns(done))
        if retry:
            await db.execute(_SQL_RETRY, self.owner, *_retry_columns(retry))
        if failed:
            status = await db.execute(_SQL_FAILED, self.owner, *_failed_columns(failed))
            finished += _rowcount(status)
        if released:
            await db.execute(_SQL_RELEASED, self.owner, released)
        if meta:
            await _set_meta(db, meta)
        if finished and self._registered:
            await db.execute(_SQL_COUNT_FINISHED, self.owner, finished)

    # -- Batch API bookkeeping ------------------------------------------------------------

    async def batch_open(self, batch: BatchRow, members: Sequence[BatchMember]) -> None:
        async with self._pool.acquire() as db, db.transaction():
            await db.execute(
                _SQL_BATCH_INSERT, batch.key, batch.state.value, batch_row_encoder.encode(batch)
            )
            await db.execute(
                _SQL_BATCH_MEMBERS_INSERT,
                batch.key,
                [m.seq for m in members],
                list(range(len(members))),
                [m.custom_id for m in members],
                [m.fingerprint for m in members],
            )

    async def batch_update(self, batch: BatchRow) -> None:
        await self._execute(
            _SQL_BATCH_UPDATE, batch.key, batch.state.value, batch_row_encoder.encode(batch)
        )

    async def batches(self, include_closed: bool = False) -> list[BatchRow]:
        rows = await self._fetch(_SQL_BATCHES_ALL if include_closed else _SQL_BATCHES_OPEN)
        return [batch_row_decoder.decode(r[0]) for r in rows]

    async def batch_members(self, key: str) -> list[tuple[ClaimedJob, str]]:
        rows = await self._fetch(_SQL_BATCH_MEMBERS, key)
        return [
            (ClaimedJob(r[0], r[1], r[2], r[3], r[4], b"", r[5], r[6], r[7]), r[8]) for r in rows
        ]

    async def batch_settle(
        self, batch: BatchRow, outcomes: Sequence[Outcome], meta: Mapping[str, str]
    ) -> None:
        async def once() -> None:
            async with self._pool.acquire() as db, db.transaction():
                await db.execute(_SQL_BATCH_ADOPT, batch.key, self.owner)
                await db.execute(_SQL_BATCH_FREE, batch.key)
                await self._apply(db, outcomes, meta)
                await db.execute(
                    _SQL_BATCH_UPDATE,
                    batch.key,
                    batch.state.value,
                    batch_row_encoder.encode(batch),
                )

        await self._again("batch_settle", once)

    async def _cache_put(self, db: _Db, done: list[Done]) -> None:
        if self._scope is None:
            return
        # one row per fingerprint, in a fixed order: two workers inserting the same keys
        # lock them in the same order (no deadlock)
        fresh = sorted({o.fingerprint: o for o in done if not o.cached}.values(), key=_fp)
        if fresh:
            await db.execute(
                _SQL_CACHE_PUT,
                self._scope,
                [o.fingerprint for o in fresh],
                [o.body for o in fresh],
                [o.prompt_tokens for o in fresh],
                [o.completion_tokens for o in fresh],
                [o.finished_at for o in fresh],
            )

    async def cached_results(self, fingerprints: Sequence[str]) -> dict[str, CachedResult]:
        return await self._again("cached_results", lambda: self._cached_results(fingerprints))

    async def _cached_results(self, fingerprints: Sequence[str]) -> dict[str, CachedResult]:
        if self._scope is None or not fingerprints:
            return {}
        async with self._pool.acquire() as db:
            rows = await db.fetch(_SQL_CACHE_GET, self._scope, list(fingerprints))
        return {r[0]: CachedResult(r[1], r[2], r[3]) for r in rows}

    async def done_rows(self, job_ids: Sequence[str]) -> dict[str, TerminalRow]:
        return await self._again("done_rows", lambda: self._done_rows(job_ids))

    async def _done_rows(self, job_ids: Sequence[str]) -> dict[str, TerminalRow]:
        if not job_ids:
            return {}
        async with self._pool.acquire() as db:
            rows = await db.fetch(_SQL_DONE_ROWS, list(job_ids))
        return {r[1]: _terminal_row(r) for r in rows}

    async def iter_records(self, kind: str, chunk: int = 2000) -> AsyncIterator[Record]:
        last = 0
        while True:
            rows = await self._fetch(_SQL_RECORDS, kind, last, chunk)
            if not rows:
                return
            for _, key, value in rows:
                yield key, value
            last = rows[-1][0]

    # -- leases ---------------------------------------------------------------------------

    async def renew(self, seqs: Sequence[int], lease_until: float) -> None:
        return await self._again("renew", lambda: self._renew(seqs, lease_until))

    async def _renew(self, seqs: Sequence[int], lease_until: float) -> None:
        if seqs:
            await self._execute(_SQL_RENEW, self.owner, list(seqs), lease_until)

    async def sweep(self, now: float) -> int:
        return await self._again("sweep", lambda: self._sweep(now))

    async def _sweep(self, now: float) -> int:
        return _rowcount(await self._execute(_SQL_SWEEP, now))

    async def reset_running(self) -> int:
        return _rowcount(await self._execute(_SQL_RESET_RUNNING))

    async def requeue_failed(self, codes: Collection[str] = ()) -> int:
        wanted = frozenset(codes)
        async with self._pool.acquire() as db, db.transaction():
            if not wanted:
                return _rowcount(await db.execute(_SQL_REQUEUE_FAILED))
            rows = await db.fetch(_SQL_FAILED_ERRORS)
            picked = [r[0] for r in rows if failure_codes(r[1]) & wanted]
            status = await db.execute(_SQL_REQUEUE_FAILED + " AND seq = ANY($1::bigint[])", picked)
            return _rowcount(status)

    async def has_running(self) -> bool:
        return bool(await self._fetchval(_SQL_HAS_RUNNING))

    async def next_due(self) -> float | None:
        value = await self._fetchval(_SQL_NEXT_DUE)
        return None if value is None else float(value)

    async def counts(self) -> QueueCounts:
        return await self._again("counts", self._counts)

    async def _counts(self) -> QueueCounts:
        async with self._pool.acquire() as db, db.transaction(isolation="repeatable_read"):
            by_stage_rows = await db.fetch(_SQL_COUNTS_BY_STAGE)
            by_model_rows = await db.fetch(_SQL_COUNTS_BY_MODEL)
            next_due = await db.fetchval(_SQL_NEXT_DUE)
        by_status: dict[str, int] = {}
        by_stage: dict[str, dict[str, int]] = {}
        totals = [0, 0, 0]
        first: float | None = None
        last: float | None = None
        for stage, status, n, att, pt, ct, f, la in by_stage_rows:
            by_status[status] = by_status.get(status, 0) + n
            by_stage.setdefault(stage, {})[status] = n
            totals = [totals[0] + att, totals[1] + pt, totals[2] + ct]
            first = f if first is None or (f is not None and f < first) else first
            last = la if last is None or (la is not None and la > last) else last
        by_model = {model: ModelUsage(*rest) for model, *rest in by_model_rows}
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
        sql = _SQL_FAILED_ROWS if failed_only else _SQL_TERMINAL
        while True:
            rows = await self._fetch(sql, last, chunk)
            if not rows:
                return
            for r in rows:
                yield _terminal_row(r)
            last = rows[-1][0]

    async def get_meta(self, key: str) -> str | None:
        value = await self._fetchval(_SQL_GET_META, key)
        return None if value is None else str(value)

    async def set_meta(self, values: Mapping[str, str]) -> None:
        return await self._again("set_meta", lambda: self._set_meta(values))

    async def _set_meta(self, values: Mapping[str, str]) -> None:
        async with self._pool.acquire() as db, db.transaction():
            await _set_meta(db, values)

    # -- the fleet: workers registered with a heartbeat ------------------------------------

    async def register_worker(self, concurrency: int, now: float | None = None) -> str:
        """Enter this process in the run's workers (its finished jobs are counted there)."""
        now = time.time() if now is None else now
        await self._execute(_SQL_REGISTER, self.owner, self.host, self.pid, concurrency, now)
        self._registered = True
        return self.owner

    async def heartbeat(self, now: float, alive_s: float) -> int:
        return await self._again("heartbeat", lambda: self._heartbeat(now, alive_s))

    async def _heartbeat(self, now: float, alive_s: float) -> int:
        """Say this worker is alive; return how many workers are (a heartbeat within
        `alive_s`, this one included)."""
        async with self._pool.acquire() as db, db.transaction():
            await db.execute(_SQL_HEARTBEAT, self.owner, now)
            live = await db.fetchval(_SQL_LIVE_WORKERS, now - alive_s)
        return max(1, int(live))

    async def worker_stopped(self, now: float) -> None:
        if self._registered:
            await self._execute(_SQL_STOPPED, self.owner, now)

    async def workers(self) -> list[WorkerRow]:
        rows = await self._fetch(_SQL_WORKERS)
        return [WorkerRow(*r) for r in rows]

    # -- helpers --------------------------------------------------------------------------

    async def _execute(self, sql: str, *args: Any) -> str:
        async def once() -> str:
            async with self._pool.acquire() as db:
                status: str = await db.execute(sql, *args)
            return status

        return await self._again("execute", once)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async def once() -> Any:
            async with self._pool.acquire() as db:
                return await db.fetchval(sql, *args)

        return await self._again("read", once)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def once() -> list[asyncpg.Record]:
            async with self._pool.acquire() as db:
                return await db.fetch(sql, *args)

        return await self._again("read", once)

    async def _again(self, what: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        """`operation`, tried again while the database is unreachable (a restart, a network
        blip), for up to `retry_s`. Every operation retried is safe to repeat: an outcome
        counts only while this process owns the job, inserts ignore what exists, and a claim
        whose answer was lost leaves jobs that the sweep returns after their lease."""
        delay = 0.1
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                return await operation()
            except (*_ROLLED_BACK, *TRANSIENT, *_AFTER_LOSS) as exc:
                rolled_back = isinstance(exc, _ROLLED_BACK)
                if not (rolled_back or _transient(exc)) or time.monotonic() >= deadline:
                    raise
                if rolled_back:
                    # the server chose this transaction to undo: nothing of it happened
                    log.warning(
                        "queue.transaction_retried", operation=what, error=type(exc).__name__
                    )
                else:
                    reason = _scrub(str(exc) or type(exc).__name__, self._url)
                    log.warning("queue.database_unreachable", operation=what, error=reason)
                    # the pool's other connections died too, or are in a state the driver
                    # cannot reset: fresh ones from here on
                    await self._pool.expire_connections()
                await asyncio.sleep(delay)
                delay = min(2 * delay, 2.0)


async def _set_meta(db: _Db, values: Mapping[str, str]) -> None:
    keys = sorted(values)  # a fixed order: concurrent writers lock the rows alike
    await db.execute(_SQL_SET_META, keys, [values[k] for k in keys])


#: a transaction the server rolled back to break a lock cycle or a serialization conflict:
#: worth running again as a whole (the statements lock rows in seq order so that a cycle
#: should not form; this is the safety net if one does)
_ROLLED_BACK = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.SerializationError)

#: what the driver raises while cleaning up after a connection died in an operation (the
#: transaction's end: "the underlying connection is closed"; the pool's reset on release:
#: "cannot switch to state …; another operation is in progress")
_AFTER_LOSS = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)


def _transient(exc: BaseException) -> bool:
    """A lost connection, directly or as the driver's error in cleaning up after one."""
    if isinstance(exc, (*TRANSIENT, asyncpg.exceptions.InternalClientError)):
        return True
    cause = exc.__context__
    return isinstance(exc, asyncpg.InterfaceError) and (
        "connection is closed" in str(exc) or (cause is not None and _transient(cause))
    )


def _group(outcomes: Sequence[Outcome]) -> tuple[list[Done], list[Retry], list[Failed], list[int]]:
    done: list[Done] = []
    retry: list[Retry] = []
    failed: list[Failed] = []
    released: list[int] = []
    for o in outcomes:
        match o:
            case Done():
                done.append(o)
            case Retry():
                retry.append(o)
            case Failed():
                failed.append(o)
            case Released():
                released.append(o.seq)
    return done, retry, failed, released


def _fp(o: Done) -> str:
    return o.fingerprint


def _rowcount(status: str) -> int:
    return int(status.rsplit(" ", 1)[1])


def _done_columns(done: list[Done]) -> tuple[list[Any], ...]:
    return (
        [o.seq for o in done],
        [o.attempts for o in done],
        [o.body for o in done],
        [o.status_code for o in done],
        [o.request_id for o in done],
        [o.prompt_tokens for o in done],
        [o.completion_tokens for o in done],
        [o.latency_ms for o in done],
        [o.cached for o in done],
        [o.first_started_at for o in done],
        [o.finished_at for o in done],
    )


def _retry_columns(retry: list[Retry]) -> tuple[list[Any], ...]:
    return (
        [o.seq for o in retry],
        [int(o.spend_attempt) for o in retry],
        [o.next_run_at for o in retry],
        [_error_encoder.encode(o.error) for o in retry],
        [o.started_at for o in retry],
    )


def _failed_columns(failed: list[Failed]) -> tuple[list[Any], ...]:
    return (
        [o.seq for o in failed],
        [o.attempts for o in failed],
        [_error_encoder.encode(o.error) for o in failed],
        [o.error.status_code for o in failed],
        [o.request_id for o in failed],
        [o.first_started_at for o in failed],
        [o.finished_at for o in failed],
    )


def _terminal_row(r: asyncpg.Record) -> TerminalRow:
    return TerminalRow(
        seq=r[0],
        id=r[1],
        status=Status(r[2]),
        attempts=r[3],
        result=r[4],
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
