"""`generate --api batch`: the run through the Batch API instead of online calls (the hook
engine.generate calls; everything before it, the queue, recovery and output files, is
shared with the online mode)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import structlog

from engine.batch.config import BatchConfig
from engine.batch.runner import run_batches
from engine.crashpoints import CrashPoints
from engine.exits import EXIT_FAILED_JOBS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from engine.output import OutputFiles
from engine.pipeline import Pipeline
from engine.queue import WorkQueue
from engine.run import RunConfig
from schemas.job import Status
from workers.batch_api import BatchApi, BatchApiError, BatchApiMissing

log = structlog.get_logger()


async def execute(
    queue: WorkQueue,
    pipeline: Pipeline,
    output: OutputFiles,
    base_url: str,
    api_key_env: str,
    run: RunConfig,
    config: BatchConfig,
    run_dir: Path,
    crash: CrashPoints,
) -> int:
    """Run every queued job through batches; the exit status (as the online mode's)."""
    api = BatchApi(base_url, os.environ.get(api_key_env, "") or "sk-no-key")
    try:
        runner, stats = await run_batches(
            queue, api, pipeline, output, config, run.retry, str(run_dir),
            lease_s=run.lease_s, grace_s=run.grace_s, seed=run.seed, crash=crash,
        )  # fmt: skip
    except BatchApiMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("nothing was sent; the queue is as it was", file=sys.stderr)
        return EXIT_USAGE
    except BatchApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("every batch sent is recorded: run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        await api.close()
    counts = await queue.counts()
    open_batches = len(await queue.batches())
    log.info(
        "run.interrupted" if runner.interrupted else "run.finished",
        api="batch",
        **{k: getattr(stats, k) for k in stats.__struct_fields__},
        open_batches=open_batches,
    )
    if runner.cancelling:
        print(
            f"cancelled {runner.cancelled} open batches (what they delivered is kept): "
            f"{counts.count(Status.DONE)} done, {counts.count(Status.QUEUED)} queued; run "
            "without --batch-cancel to go on"
        )
        return EXIT_INTERRUPTED
    if runner.interrupted:
        print(
            f"stopped: {stats.done + stats.failed} jobs finished in this run, {open_batches} "
            f"batches still open, {counts.count(Status.QUEUED)} jobs queued; run the same "
            "command to resume"
        )
        return EXIT_INTERRUPTED
    failed = counts.count(Status.FAILED)
    print(
        f"complete: {counts.count(Status.DONE)} done, {failed} failed "
        f"({stats.batches} batches in {stats.waves} waves) -> {run_dir}"
    )
    return EXIT_FAILED_JOBS if failed else EXIT_OK
