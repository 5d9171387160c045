"""Which backend holds a run's queue: the one place that names them.

A run directory holds its queue in one SQLite file (`RUN_DIR/queue.sqlite`), the default; a
`--queue postgresql://…` URL names a PostgreSQL database shared by worker processes on many
hosts (`engine.queue.postgres`). The in-memory backend is for tests, built directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import SettingsError
from engine.queue import CacheSpec, WorkQueue
from engine.rundir import queue_path

if TYPE_CHECKING:
    from engine.queue.postgres import PostgresQueue

QUEUE_URL_SCHEMES = ("postgresql", "postgres")


async def open_queue(
    run_dir: Path, cache: CacheSpec | None = None, url: str | None = None
) -> WorkQueue:
    """The queue of `run_dir` (created, or migrated to the current schema, if needed), or
    with `url` the shared queue in that database."""
    if url is not None:
        return await open_shared_queue(url, cache)
    from engine.queue.sqlite import SQLiteQueue  # noqa: PLC0415 (loaded only when used)

    return await SQLiteQueue.open(queue_path(run_dir), cache)


async def open_shared_queue(url: str, cache: CacheSpec | None = None) -> PostgresQueue:
    """The queue a fleet of workers shares; SettingsError for a URL that names none."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in QUEUE_URL_SCHEMES:
        raise SettingsError(
            "--queue takes a PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE), "
            f"not {scheme + '://…' if scheme else 'a path'}"
        )
    from engine.queue.postgres import PostgresQueue  # noqa: PLC0415 (asyncpg only when used)

    return await PostgresQueue.open(url, cache)


def run_exists(run_dir: Path) -> bool:
    return queue_path(run_dir).exists()
