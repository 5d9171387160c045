"""Which backend holds a run's queue: the one place that names them.

Today every run directory holds its queue in one SQLite file (`RUN_DIR/queue.sqlite`);
the in-memory backend is for tests, built directly.
"""

from __future__ import annotations

from pathlib import Path

from engine.queue import CacheSpec, WorkQueue
from engine.rundir import queue_path


async def open_queue(run_dir: Path, cache: CacheSpec | None = None) -> WorkQueue:
    """The queue of `run_dir` (created, or migrated to the current schema, if needed)."""
    from engine.queue.sqlite import SQLiteQueue  # noqa: PLC0415 (only this backend today)

    return await SQLiteQueue.open(queue_path(run_dir), cache)


def run_exists(run_dir: Path) -> bool:
    return queue_path(run_dir).exists()
