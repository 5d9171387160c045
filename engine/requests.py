"""The plain pipeline: every request of an OpenAI Batch API input file, one job each.

No children, no checks of the reply's content, nothing to export beyond the engine's own
results.jsonl / errors.jsonl. A file is enqueued once: its size and mtime are remembered in the
queue's meta, so rerunning the same command resumes instead of reading the file again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import structlog

from engine.errors import InputError, SettingsError
from engine.inputs import read_batch_requests
from engine.pipeline import PIPELINE_KEY, RESULTS_FORMAT
from engine.prices import Price
from engine.queue import EnqueueConflict, WorkQueue
from schemas.job import ClaimedJob
from workers.client import CallResult

NAME = "requests"
log = structlog.get_logger()


class RequestsPipeline:
    """`generate --requests FILE` (`path` None: a resumed run, for `export`)."""

    name = NAME
    export_formats: tuple[str, ...] = ()
    default_formats = (RESULTS_FORMAT,)

    def __init__(self, path: Path | None) -> None:
        self.path = path

    async def prepare(self, queue: WorkQueue) -> None:
        if self.path is not None:
            await enqueue_file(queue, self.path)

    async def build_requests(self, queue: WorkQueue, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        return jobs

    def check(self, job: ClaimedJob, result: CallResult) -> None:
        return None

    async def export(
        self,
        queue: WorkQueue,
        run_dir: Path,
        prices: Mapping[str, Price],
        formats: Collection[str],
    ) -> str | None:
        return None


async def resume(queue: WorkQueue) -> RequestsPipeline:
    return RequestsPipeline(None)


async def enqueue_file(queue: WorkQueue, path: Path) -> int:
    """Enqueue a Batch API request file unless this exact file was enqueued already."""
    stored = await queue.get_meta(PIPELINE_KEY)
    if stored not in (None, NAME):
        raise SettingsError(f"this run directory holds a {stored} run, not a --requests run")
    key, signature = _source_signature(path)
    if await queue.get_meta(key) == signature:
        return 0
    try:
        added = await queue.enqueue(read_batch_requests(path), meta={PIPELINE_KEY: NAME})
    except EnqueueConflict as exc:
        raise InputError(path, exc.line, exc.detail) from None
    await queue.set_meta({key: signature})
    log.info("queue.enqueued", file=str(path), new_jobs=added)
    return added


def _source_signature(path: Path) -> tuple[str, str]:
    """(meta key, size and mtime) identifying a request file already enqueued."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror}") from None
    return f"source:{path.resolve()}", f"{stat.st_size}:{stat.st_mtime_ns}"
