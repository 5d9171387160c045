"""Which PostgreSQL driver the queue backend uses: asyncpg or psycopg 3, measured.

The queue's hot path is a claim of a batch (`UPDATE … WHERE seq IN (SELECT … FOR UPDATE SKIP
LOCKED) RETURNING …`) and one batched UPDATE of the results, with the batch passed as arrays
(`unnest($1::bigint[], $2::bytea[])`). This times that loop over 51,200 jobs of 600-byte
payloads and 1,500-byte results, 256 per batch, twice per driver, in one process.

    pip install asyncpg 'psycopg[binary]'
    python docs/pg_driver_choice.py [postgresql://postgres@127.0.0.1:5432/postgres]

It creates and drops a table `drvbench` in that database. Not part of the engine or its tests
(psycopg is not a dependency).
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg
import psycopg

URL = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"
N = 51_200
SETUP = (
    "DROP TABLE IF EXISTS drvbench",
    "CREATE TABLE drvbench (seq bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'queued', "
    "payload bytea, result bytea)",
)
CLAIM = (
    "UPDATE drvbench SET status = 'running' WHERE seq IN (SELECT seq FROM drvbench "
    "WHERE status = 'queued' ORDER BY seq LIMIT 256 FOR UPDATE SKIP LOCKED) RETURNING seq, payload"
)
DONE = (
    "UPDATE drvbench AS j SET status = 'done', result = u.r "
    "FROM unnest({0}::bigint[], {1}::bytea[]) AS u(s, r) WHERE j.seq = u.s"
)


async def with_asyncpg() -> float:
    db = await asyncpg.connect(URL)
    for statement in SETUP:
        await db.execute(statement)
    await db.executemany("INSERT INTO drvbench (payload) VALUES ($1)", [(b"x" * 600,)] * N)
    started, n = time.perf_counter(), 0
    while rows := await db.fetch(CLAIM):
        async with db.transaction():
            seqs = [r[0] for r in rows]
            await db.execute(DONE.format("$1", "$2"), seqs, [b"y" * 1500] * len(seqs))
        n += len(rows)
    elapsed = time.perf_counter() - started
    await db.execute("DROP TABLE drvbench")
    await db.close()
    return n / elapsed


async def with_psycopg() -> float:
    db = await psycopg.AsyncConnection.connect(URL, autocommit=True)
    for statement in SETUP:
        await db.execute(statement)
    async with db.cursor() as cur:
        await cur.executemany("INSERT INTO drvbench (payload) VALUES (%s)", [(b"x" * 600,)] * N)
    started, n = time.perf_counter(), 0
    while rows := await (await db.execute(CLAIM)).fetchall():
        async with db.transaction():
            seqs = [r[0] for r in rows]
            await db.execute(DONE.format("%s", "%s"), (seqs, [b"y" * 1500] * len(seqs)))
        n += len(rows)
    elapsed = time.perf_counter() - started
    await db.execute("DROP TABLE drvbench")
    await db.close()
    return n / elapsed


async def main() -> None:
    for _ in range(2):
        print(f"asyncpg   {await with_asyncpg():8.0f} jobs/s (claim 256 + batched commit)")
        print(f"psycopg 3 {await with_psycopg():8.0f} jobs/s (claim 256 + batched commit)")


if __name__ == "__main__":
    asyncio.run(main())
