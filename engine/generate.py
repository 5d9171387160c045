"""`python -m engine generate`: enqueue, recover, run, report — the steps in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import random
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import msgspec
import structlog

from engine.abandoned import abandoned_line
from engine.batch.config import BatchConfig
from engine.command_line import COMMAND_KEY, rerun_command
from engine.config import EngineConfig
from engine.crashpoints import CrashPoints
from engine.endpoint import cache_scope, chosen_base_url
from engine.errors import UserError, exit_status_of
from engine.exits import (
    EXIT_FAILED_JOBS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_SYSTEMATIC,
    EXIT_USAGE,
)
from engine.learned_rates import load_rates, rates_path, remember_rates
from engine.output import OutputFiles, export_results, mark_for_rebuild, unmark_rebuild
from engine.phases import phase
from engine.pipeline import RESULTS_FORMAT, Pipeline
from engine.prices import Price, load_prices
from engine.progress import ProgressReporter
from engine.queue import CacheSpec, WorkQueue
from engine.queue.backends import open_queue
from engine.run import Coordinator, RunConfig, RunStats
from engine.rundir import RunDirBusy, default_cache_path, lock_run_dir
from engine.simproc import local_simulator
from engine.storage import space_warning, storage_error_in
from engine.systematic import SystematicFailures, halt_line
from ratelimits.breaker import BreakerConfig, CircuitBreaker
from ratelimits.clock import LoopClock
from ratelimits.learned import LearnConfig, LearnerRegistry
from ratelimits.limiter import LimiterRegistry, LimitsConfig
from schemas.job import QueueCounts, Status
from workers.client import AiohttpTransport, ChatTransport
from workers.deadline import deadlines_of
from workers.dispatch import Dispatcher, Validator
from workers.http1 import Http1Transport
from workers.loops import on_stop_signals
from workers.ratelimited import RateLimitedJobs, RateLimitPolicy

log = structlog.get_logger()


class GenerateOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    run_dir: Path
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else the built-in simulator
    api_key_env: str = "OPENAI_API_KEY"
    transport: str = "aiohttp"
    simulator_args: tuple[str, ...] = ()
    progress: bool | None = None  # None: on a terminal only
    run: RunConfig = RunConfig()
    breaker: BreakerConfig = BreakerConfig()
    cache_path: Path | None = None  # None: no cache, no deduplication
    limits: LimitsConfig | None = None  # None: no client-side rate limit
    prices_path: Path | None = None
    # issue 15: 429s spend no attempt (give-up ceiling), the allowed rate is learned (None: off)
    # and remembered in `rates_path` (None: not remembered)
    rate_limit: RateLimitPolicy = RateLimitPolicy()
    learn: LearnConfig | None = LearnConfig()
    rates_path: Path | None = None
    # what the run writes when it finishes (`--export-format`); None: the pipeline's defaults
    export_formats: tuple[str, ...] | None = None
    # issue 16: requeue failed jobs first (None: no; (): all; else by status or error code)
    retry_failed: tuple[str, ...] | None = None
    # issue 13: "batch" runs the jobs through the Batch API (engine.batch)
    api: str = "online"
    batch: BatchConfig = BatchConfig()

    @classmethod
    def from_config(cls, config: EngineConfig, run_dir: Path) -> GenerateOptions:
        """The resolved options of a run of `config` in `run_dir`."""
        return cls(
            run_dir=run_dir,
            base_url=config.base_url,
            api_key_env=config.api_key_env,
            transport=config.transport,
            simulator_args=("--latency-ms", str(config.sim_latency_ms)),
            progress=config.progress,
            run=config.run,
            breaker=config.breaker,
            cache_path=None if config.no_cache else (config.cache or default_cache_path()),
            limits=config.limits.limiter_config(),
            prices_path=config.prices,
            rate_limit=config.rate_limit,
            learn=LearnConfig() if config.learn_rate else None,
            rates_path=rates_path(config.cache or default_cache_path())
            if config.learn_rate
            else None,
            retry_failed=config.retry_failed,
            api=config.api,
            batch=config.batch,
        )


async def generate(options: GenerateOptions, pipeline: Pipeline) -> int:
    """Run `pipeline` in `options.run_dir` to the end (or to a stop); return the exit status.

    A full or read-only filesystem anywhere (queue, cache, output files, export) stops it with
    one line naming the path, exit 5: the queue's transactions roll back and the output files
    are cut back to what is committed, so the same command resumes once there is space."""
    try:
        return await _generate_locked(options, pipeline)
    except (OSError, UserError, BaseExceptionGroup) as exc:
        error = storage_error_in(exc, options.run_dir)
        if error is None:
            raise
        log.warning("run.storage_error", path=str(error.path), errno=error.code)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STORAGE


async def _generate_locked(options: GenerateOptions, pipeline: Pipeline) -> int:
    options.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = lock_run_dir(options.run_dir)
    except RunDirBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    base_url = chosen_base_url(options.base_url)
    cache = None
    if options.cache_path is not None:
        cache = CacheSpec(options.cache_path, cache_scope(base_url))
    with lock:
        try:
            queue = await open_queue(options.run_dir, cache)
        except UserError as exc:
            if storage_error_in(exc, options.run_dir) is not None:
                raise
            print(f"error: {exc}", file=sys.stderr)
            return exit_status_of(exc)
        try:
            return await _generate(queue, options, pipeline, base_url)
        finally:
            await queue.close()


async def _generate(
    queue: WorkQueue, options: GenerateOptions, pipeline: Pipeline, base_url: str | None
) -> int:
    interactive = _interactive(options)
    try:
        prices = load_prices(options.prices_path)
        with phase("enqueue", interactive):
            await pipeline.prepare(queue)
    except UserError as exc:
        if storage_error_in(exc, options.run_dir) is not None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        print("nothing was enqueued", file=sys.stderr)
        return exit_status_of(exc)
    command = rerun_command()
    if command is not None:
        await queue.set_meta({COMMAND_KEY: command})
    if options.retry_failed is not None:
        await _requeue_failed(queue, options.retry_failed)
    code = await _execute(queue, options, pipeline, prices, base_url)
    if code not in (EXIT_INTERRUPTED, EXIT_SYSTEMATIC):
        formats = options.export_formats or pipeline.default_formats
        with phase("export", interactive):
            if RESULTS_FORMAT in formats and RESULTS_FORMAT not in pipeline.default_formats:
                await export_results(queue, options.run_dir, prices)
            said = await pipeline.export(queue, options.run_dir, prices, formats)
        if said:
            print(said)
    return code


async def _requeue_failed(queue: WorkQueue, codes: tuple[str, ...]) -> int:
    """`--retry-failed[=CODE,…]`: failed jobs back in the queue with fresh attempts. The
    output files are rebuilt (marked first, so a crash in between rebuilds too): a retried
    job leaves errors.jsonl, and appears once, wherever its new outcome puts it."""
    already = await mark_for_rebuild(queue)
    count = await queue.requeue_failed(codes)
    if count == 0 and not already:
        await unmark_rebuild(queue)
    which = f" (failed with {', '.join(codes)})" if codes else ""
    print(f"retrying {count} failed jobs{which} with fresh attempts")
    return count


def _proven_keys(counts: QueueCounts) -> Callable[[str, str], bool]:
    """(stage, model) that has DONE jobs already: the server takes its requests, so a 400 of
    one of them is that request's fault, not a systematic rejection (engine.systematic)."""
    stages = {stage for stage, by in counts.by_stage.items() if by.get(Status.DONE.value)}
    models = {model for model, usage in counts.by_model.items() if usage.done}
    return lambda stage, model: stage in stages and model in models


async def _execute(
    queue: WorkQueue,
    options: GenerateOptions,
    pipeline: Pipeline,
    prices: dict[str, Price],
    base_url: str | None,
) -> int:
    orphans = await queue.reset_running()
    if orphans:
        log.info("queue.recovered", jobs_back_to_queue=orphans)
    crash = CrashPoints.from_env()
    live_results = RESULTS_FORMAT in pipeline.default_formats
    output = OutputFiles(options.run_dir, crash, prices, with_results=live_results)
    try:
        await output.recover(queue)
        counts = await queue.counts()
        if counts.total == 0:
            print("error: the queue is empty: give --requests FILE", file=sys.stderr)
            return EXIT_USAGE
        open_batches = len(await queue.batches())  # their jobs stay RUNNING until collected
        if open_batches and options.api != "batch":
            print(
                f"error: this run has {open_batches} open Batch API batches: resume it with "
                "--api batch (add --batch-cancel to cancel them)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if counts.count(Status.QUEUED) == 0 and not open_batches:
            failed = counts.count(Status.FAILED)
            again = "; --retry-failed runs the failed ones again" if failed else ""
            print(
                f"run already complete: {counts.count(Status.DONE)} done, "
                f"{failed} failed; nothing to do ({options.run_dir}){again}"
            )
            return _exit_code(counts.count(Status.FAILED), interrupted=False)
        finished_before = counts.count(Status.DONE) + counts.count(Status.FAILED)
        left = counts.total - finished_before
        warning = space_warning(pipeline.name, left, options.run_dir, options.cache_path)
        if warning:
            print(warning, file=sys.stderr)
        systematic = SystematicFailures(options.run.stop_after_same_errors, _proven_keys(counts))
        async with _endpoint(options, base_url) as url:
            if options.api == "batch":
                return await _batch_mode(queue, options, pipeline, output, url, crash)
            dispatcher = _dispatcher(options, url, pipeline.check, base_url)
            coordinator = Coordinator(
                queue, dispatcher, output, options.run, pipeline, crash=crash, systematic=systematic
            )
            try:
                code = await _run(queue, coordinator, options, counts.total, finished_before)
            finally:
                await _close_dispatcher(queue, dispatcher, base_url, options)
            if systematic.halt is not None:
                print(halt_line(systematic.halt, url, options.api_key_env, systematic.released))
                return EXIT_SYSTEMATIC
            return code
    finally:
        output.close()


async def _batch_mode(
    queue: WorkQueue,
    options: GenerateOptions,
    pipeline: Pipeline,
    output: OutputFiles,
    url: str,
    crash: CrashPoints,
) -> int:
    # imported on demand: the batch mode needs the openai SDK, the online mode does not
    from engine.batch.mode import execute  # noqa: PLC0415

    return await execute(
        queue, pipeline, output, url, options.api_key_env, options.run, options.batch,
        options.run_dir, crash,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _endpoint(options: GenerateOptions, base_url: str | None) -> AsyncIterator[str]:
    if base_url:
        yield base_url
        return
    async with local_simulator(options.simulator_args) as url:
        print(f"no --base-url or OPENAI_BASE_URL: using the built-in simulator at {url}")
        yield url


def _dispatcher(
    options: GenerateOptions, base_url: str, validator: Validator, endpoint: str | None
) -> Dispatcher:
    """The dispatcher calling `base_url`; `endpoint` is the URL the user chose (None: the
    built-in simulator), whose remembered rates are the learners' starting points."""
    clock = LoopClock()
    limits_config = options.limits
    learners = None
    if options.learn is not None:  # the learned rate paces through the limiter: always one
        limits_config = limits_config or LimitsConfig()
        start = load_rates(options.rates_path, endpoint) if options.rates_path else {}
        learners = LearnerRegistry(options.learn, clock, start_rpm=start)
    limits = LimiterRegistry(limits_config, clock) if limits_config is not None else None
    rng = random.Random(options.run.seed)
    return Dispatcher(
        _transport(options, base_url),
        options.run.retry,
        CircuitBreaker(options.breaker, clock),
        limits,
        rng,
        coalesce=options.cache_path is not None,
        validator=validator,
        deadlines=deadlines_of(options.run.deadline),
        learners=learners,
        rate_limited=RateLimitedJobs(options.rate_limit, rng),
    )


async def _close_dispatcher(
    queue: WorkQueue, dispatcher: Dispatcher, base_url: str | None, options: GenerateOptions
) -> None:
    """Remember the learned rates for the next run at `base_url`, then close the transport."""
    try:
        await remember_rates(queue, dispatcher.learners, base_url, options.rates_path)
    except OSError as exc:  # the rates are a hint for the next run, not its data
        log.warning("rates.not_remembered", error=str(exc))
    await dispatcher.close()


def _transport(options: GenerateOptions, base_url: str) -> ChatTransport:
    api_key = os.environ.get(options.api_key_env, "") or "sk-no-key"
    run = options.run
    if options.transport == "sdk":
        # imported on demand: the SDK is a noticeable share of start-up, and only this needs it
        sdk = importlib.import_module("workers.sdk_client")
        transport: ChatTransport = sdk.SdkTransport(
            base_url, api_key, run.concurrency, run.timeout_s
        )
        return transport
    if options.transport == "aiohttp":
        return AiohttpTransport(base_url, api_key, run.concurrency, run.timeout_s)
    return Http1Transport(base_url, api_key, run.concurrency, run.timeout_s)


async def _run(
    queue: WorkQueue,
    coordinator: Coordinator,
    options: GenerateOptions,
    total: int,
    finished_before: int,
) -> int:
    interactive = _interactive(options)
    dispatcher = coordinator.dispatcher
    reporter = ProgressReporter(
        coordinator.stats,
        total,
        finished_before,
        interactive,
        dispatcher.breaker,
        learners=dispatcher.learners,
    )
    progress = asyncio.create_task(reporter.run())
    _freeze_startup_objects()
    try:
        with _stop_on_signals(coordinator):
            stats = await coordinator.run()
    finally:
        progress.cancel()
    interrupted = coordinator.stopping
    counts = await queue.counts()
    summary = {**reporter.snapshot(), **_resource_usage(stats)}
    summary["abandoned_calls"] = coordinator.abandoned.this_run
    log.info("run.finished" if not interrupted else "run.interrupted", **summary)
    if coordinator.systematic.halt is not None:
        pass  # `_execute` says why, in one line
    elif interrupted:
        print(
            f"stopped: {stats.done + stats.failed} jobs finished in this run, "
            f"{counts.count(Status.QUEUED)} left; run the same command to resume"
        )
    else:
        print(
            f"complete: {counts.count(Status.DONE)} done, {counts.count(Status.FAILED)} failed "
            f"-> {options.run_dir}"
        )
    if coordinator.abandoned.this_run:
        print(abandoned_line(coordinator.abandoned.this_run))
    return _exit_code(counts.count(Status.FAILED), interrupted)


def _interactive(options: GenerateOptions) -> bool:
    return sys.stderr.isatty() if options.progress is None else options.progress


def peak_rss_kib(usage: resource.struct_rusage) -> int:
    """This process's own peak RSS. On Linux `ru_maxrss` keeps the peak of the process that
    exec'd us (a big parent inflates it), so read VmHWM from /proc when it is there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return usage.ru_maxrss


def _resource_usage(stats: RunStats) -> dict[str, float]:
    """This run's wall time, overall rate, CPU time and peak RSS (for the log and the bench)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = time.monotonic() - stats.started
    finished = stats.done + stats.failed
    return {
        "elapsed_s": round(elapsed, 3),
        "overall_rate_per_s": round(finished / elapsed, 1) if elapsed > 0 else 0.0,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(peak_rss_kib(usage) / 1024.0, 1),
    }


def _exit_code(failed: int, interrupted: bool) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_JOBS if failed else EXIT_OK


def _freeze_startup_objects() -> None:
    """Move everything alive now (imported modules, the prompts and personas, the loaded
    config) out of the garbage collector's sight: the run creates objects by the million, and
    every full collection would otherwise walk all of these again (`gc.freeze`)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _stop_on_signals(coordinator: Coordinator) -> Iterator[None]:
    """First SIGINT/SIGTERM: graceful stop. Second: exit at once (the queue loses nothing)."""

    def on_signal(signum: int) -> None:
        if coordinator.stopping:
            os._exit(EXIT_INTERRUPTED)
        print(
            f"{signal.Signals(signum).name}: stopping (in-flight calls get the grace period; "
            "signal again to exit now)",
            file=sys.stderr,
        )
        coordinator.request_stop()

    with on_stop_signals(on_signal):
        yield
