"""Many worker processes, on one host or many, on one run in a PostgreSQL database.

    generate --queue URL …   enqueue (idempotent: every host may run the same command), then
                             work as one of the run's workers
    worker --queue URL …     join the run already in that database as a worker only (its
                             pipeline rebuilt from what the enqueuer stored: the name under
                             `run.pipeline`, and the pipeline's records and meta)

A worker registers in the database and beats every `HEARTBEAT_S`; the live workers (a beat
within `ALIVE_S`) divide the run's `--rpm/--tpm` between them, re-divided as they come and go
(learning the server's rate per worker is off then: the shares are the budget). A worker
that dies holds its jobs until their lease ends; then the others' sweep returns them. Every
worker ends when no job is queued or running anywhere. The database is the output of record:
workers write no files; `export --queue URL --run-dir DIR` writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

import msgspec
import structlog

from engine import pipelines
from engine.endpoint import cache_scope, chosen_base_url
from engine.errors import SettingsError, UserError, exit_status_of
from engine.exits import EXIT_INTERRUPTED, EXIT_SYSTEMATIC, EXIT_USAGE
from engine.generate import (
    GenerateOptions,
    _close_dispatcher,
    _dispatcher,
    _endpoint,
    _exit_code,
    _freeze_startup_objects,
    _resource_usage,
    _stop_on_signals,
)
from engine.output import OutputFiles
from engine.pipeline import PIPELINE_KEY, Pipeline
from engine.progress import ProgressReporter
from engine.queue import CacheSpec
from engine.queue.backends import open_shared_queue
from engine.queue.postgres import PostgresQueue
from engine.run import Coordinator
from engine.systematic import halt_line
from schemas.job import Status, TerminalRow
from workers.dispatch import Dispatcher

log = structlog.get_logger()

HEARTBEAT_S = 1.0
ALIVE_S = 5.0  # a worker silent this long is not counted in the budget's division
POLL_S = 0.25  # how often an idle worker looks for jobs others' commits released
PROGRESS_EVERY = 5  # heartbeats between two reads of the run's counts (a scan of the jobs)


class _NoFiles(OutputFiles):
    """A fleet worker writes no output files: the database is the output of record."""

    def append(self, rows: Iterable[TerminalRow]) -> dict[str, str]:
        return {}


async def run_worker(
    options: GenerateOptions, url: str, pipeline: Pipeline | None, *, enqueue_only: bool = False
) -> int:
    """Work on the run in the database at `url` until no job is left (or a stop); with
    `pipeline`, enqueue it first (`generate --queue`; only that with `enqueue_only`).
    Returns the exit status."""
    base_url = chosen_base_url(options.base_url)
    cache = None
    if options.cache_path is not None:
        cache = CacheSpec(options.cache_path, cache_scope(base_url))
    if options.limits is not None and options.learn is not None:
        limits = options.limits.default
        if limits.rpm is not None or limits.tpm is not None:  # the shares are the budget
            options = msgspec.structs.replace(options, learn=None)
    if options.api != "online":
        print(
            "error: --api batch runs in one process; it does not take --queue (run the fleet "
            "online, or the Batch API on one host without --queue)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        queue = await open_shared_queue(url, cache)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_status_of(exc)
    try:
        return await _work(queue, options, pipeline, base_url, enqueue_only)
    finally:
        await queue.close()


async def _work(
    queue: PostgresQueue,
    options: GenerateOptions,
    pipeline: Pipeline | None,
    base_url: str | None,
    enqueue_only: bool,
) -> int:
    try:
        if pipeline is not None:
            await pipeline.prepare(queue)
        else:
            pipeline = await _joined_pipeline(queue)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if pipeline is not None:
            print("nothing was enqueued", file=sys.stderr)
        return exit_status_of(exc)
    counts = await queue.counts()
    if counts.total == 0:
        print(f"error: the queue at {queue.url} is empty: give --requests FILE", file=sys.stderr)
        return EXIT_USAGE
    if options.retry_failed is not None:  # fresh attempts for failed jobs (issue 16)
        again = await queue.requeue_failed(options.retry_failed)
        which = f" (failed with {', '.join(options.retry_failed)})" if options.retry_failed else ""
        print(f"retrying {again} failed jobs{which} with fresh attempts")
    if enqueue_only:
        print(f"enqueued: {counts.total} jobs in the run at {queue.url}")
        return 0
    await queue.register_worker(options.run.concurrency)
    log.info("worker.joined", queue=queue.url, worker=queue.owner, pipeline=pipeline.name)
    try:
        async with _endpoint(options, base_url) as endpoint:
            dispatcher = _dispatcher(options, endpoint, pipeline.check, base_url)
            output = _NoFiles(options.run_dir)
            coordinator = Coordinator(
                queue, dispatcher, output, options.run, pipeline, shared_poll_s=POLL_S
            )
            try:
                code = await _run(queue, coordinator, options)
            finally:
                await _close_dispatcher(queue, dispatcher, base_url, options)
            halt = coordinator.systematic
            if halt.halt is not None:  # every call of a stage and model rejected alike (#16)
                line = halt_line(halt.halt, endpoint, options.api_key_env, halt.released)
                print(line)
                return EXIT_SYSTEMATIC
            return code
    finally:
        await queue.worker_stopped(time.time())


async def _joined_pipeline(queue: PostgresQueue) -> Pipeline:
    name = await queue.get_meta(PIPELINE_KEY)
    if name is None:
        raise SettingsError(
            f"no run in the database {queue.url}: start one with "
            "`python -m engine generate --queue URL …` (workers join a run, they do not "
            "enqueue one)"
        )
    return await pipelines.resume(name, queue)


async def _run(queue: PostgresQueue, coordinator: Coordinator, options: GenerateOptions) -> int:
    counts = await queue.counts()
    finished = counts.count(Status.DONE) + counts.count(Status.FAILED)
    dispatcher = coordinator.dispatcher
    interactive = sys.stderr.isatty() if options.progress is None else options.progress
    reporter = ProgressReporter(
        coordinator.stats,
        counts.total,
        finished,
        interactive,
        dispatcher.breaker,
        learners=dispatcher.learners,
    )
    async with _background(_heartbeats(queue, dispatcher, reporter), reporter.run()):
        _freeze_startup_objects()
        with _stop_on_signals(coordinator):
            stats = await coordinator.run()
    interrupted = coordinator.stopping
    counts = await queue.counts()
    if coordinator.systematic.halt is not None:
        return EXIT_INTERRUPTED  # `_work` says why, in one line, and exits 4
    summary = {**reporter.snapshot(), **_resource_usage(stats)}
    log.info("worker.finished" if not interrupted else "worker.interrupted", **summary)
    mine = stats.done + stats.failed
    if interrupted:
        print(
            f"stopped: this worker finished {mine} jobs; {counts.count(Status.QUEUED)} queued "
            "in the run; run the same command to rejoin"
        )
        return EXIT_INTERRUPTED
    print(
        f"run complete: {counts.count(Status.DONE)} done, {counts.count(Status.FAILED)} failed "
        f"({mine} by this worker); write the files with: python -m engine export "
        f"--queue '{queue.url}' --run-dir DIR"
    )
    return _exit_code(counts.count(Status.FAILED), interrupted=False)


@contextlib.asynccontextmanager
async def _background(*work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `work` alongside the block; cancelled when it ends."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _heartbeats(
    queue: PostgresQueue, dispatcher: Dispatcher, reporter: ProgressReporter
) -> None:
    """Beat; take this worker's share of the budget; show the run's total progress."""
    share = 1.0
    for beat in itertools.count():
        live = await queue.heartbeat(time.time(), ALIVE_S)
        if dispatcher.limits is not None and 1.0 / live != share:
            share = 1.0 / live
            dispatcher.limits.set_share(share)
            log.info("worker.budget_share", live_workers=live, share=round(share, 4))
        if beat % PROGRESS_EVERY == 0:
            counts = await queue.counts()
            finished = counts.count(Status.DONE) + counts.count(Status.FAILED)
            reporter.observe_run(finished, counts.total)
        await asyncio.sleep(HEARTBEAT_S)
