"""Compressed response bodies (engine.queue.blobs) in the SQLite queue and the shared cache."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import msgspec
import pytest

from engine.queue import CacheSpec
from engine.queue.blobs import TRAIN_SAMPLES, ZSTD_MAGIC, BlobCodec
from engine.queue.sqlite import SCHEMA_VERSION, SQLiteQueue
from schemas.job import Done, NewJob

WORDS = [
    "people",
    "values",
    "family",
    "careful",
    "trust",
    "change",
    "future",
    "community",
    "respect",
    "reasons",
]


def body(i: int) -> bytes:
    rng = random.Random(i)
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
    return msgspec.json.encode(
        {
            "object": "chat.completion",
            "id": f"chatcmpl-{i:012d}",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "model": "sim-small",
            "usage": {"prompt_tokens": 40 + i % 7, "completion_tokens": 50, "total_tokens": 97},
        }
    )


def test_codec_stores_raw_until_trained_then_compresses() -> None:
    codec = BlobCodec()
    raw = [codec.encode(body(i)) for i in range(TRAIN_SAMPLES - 1)]
    assert raw == [body(i) for i in range(TRAIN_SAMPLES - 1)]
    assert codec.take_new_dictionary() is None
    codec.encode(body(TRAIN_SAMPLES))  # the sample that completes training
    new = codec.take_new_dictionary()
    assert new is not None
    assert codec.take_new_dictionary() is None  # handed out once
    stored = [codec.encode(body(i)) for i in range(5000, 5200)]
    assert all(s.startswith(ZSTD_MAGIC) for s in stored)
    assert sum(map(len, stored)) * 2 < sum(len(body(i)) for i in range(5000, 5200))
    # a reader that knows the stored dictionary decodes both forms
    reader = BlobCodec([new])
    assert [reader.decode(s) for s in stored] == [body(i) for i in range(5000, 5200)]
    assert reader.decode(raw[3]) == body(3)


def test_unknown_dictionary_is_an_error_not_garbage() -> None:
    writer = BlobCodec()
    for i in range(TRAIN_SAMPLES):
        writer.encode(body(i))
    stored = writer.encode(body(99_999))
    with pytest.raises(LookupError, match="unknown dictionary"):
        BlobCodec().decode(stored)


def _job(i: int) -> NewJob:
    return NewJob(id=f"job-{i}", fingerprint=f"fp-{i}", payload=b"{}", line=i)


async def _run_jobs(queue: SQLiteQueue, n: int) -> None:
    await queue.enqueue(_job(i) for i in range(n))
    claimed = await queue.claim(n, now=1.0, lease_s=60.0)
    outcomes = [
        Done(j.seq, j.id, f"fp-{i}", 1, body(i), 200, "r", 1, 2, 3.0, 1.0, 2.0, 2.0)
        for i, j in enumerate(claimed)
    ]
    for start in range(0, n, 300):  # several commits, as the coordinator makes them
        await queue.commit(outcomes[start : start + 300], {})


async def test_queue_and_cache_keep_bodies_compressed_and_exact(tmp_path: Path) -> None:
    n = TRAIN_SAMPLES + 500
    cache = CacheSpec(tmp_path / "cache.sqlite", "scope-a")
    queue = await SQLiteQueue.open(tmp_path / "a.sqlite", cache)
    # a second run on the same cache, opened before the first has a dictionary
    other = await SQLiteQueue.open(tmp_path / "b.sqlite", cache)
    await _run_jobs(queue, n)
    await queue.close()

    with sqlite3.connect(tmp_path / "a.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        [(dicts,)] = db.execute("SELECT count(*) FROM blob_dicts").fetchall()
        stored = [r[0] for r in db.execute("SELECT result FROM jobs ORDER BY seq")]
    assert dicts == 1
    assert sum(s.startswith(ZSTD_MAGIC) for s in stored) >= n - TRAIN_SAMPLES
    after = range(TRAIN_SAMPLES + 1, n)  # bodies compressed with the trained dictionary
    assert sum(len(stored[i]) for i in after) < 0.5 * sum(len(body(i)) for i in after)

    reopened = await SQLiteQueue.open(tmp_path / "a.sqlite", cache)
    rows = await reopened.done_rows([f"job-{i}" for i in range(n)])
    assert {k: v.result for k, v in rows.items()} == {f"job-{i}": body(i) for i in range(n)}
    assert [r.result async for r in reopened.iter_terminal()] == [body(i) for i in range(n)]
    await reopened.close()

    hits = await other.cached_results([f"fp-{i}" for i in range(n)])
    assert {fp: hit.body for fp, hit in hits.items()} == {f"fp-{i}": body(i) for i in range(n)}
    await other.close()


async def test_version_3_file_keeps_its_bodies(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    queue = await SQLiteQueue.open(path)
    await _run_jobs(queue, 10)
    await queue.close()
    with sqlite3.connect(path) as db:  # as a version-3 engine left it
        db.execute("DROP TABLE blob_dicts")
        db.execute("PRAGMA user_version = 3")
    queue = await SQLiteQueue.open(path)
    rows = await queue.done_rows([f"job-{i}" for i in range(10)])
    assert [rows[f"job-{i}"].result for i in range(10)] == [body(i) for i in range(10)]
    await queue.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
