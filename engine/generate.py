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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import structlog

from engine.crashpoints import CrashPoints
from engine.exits import EXIT_FAILED_JOBS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from engine.inputs import InputError, read_batch_requests
from engine.learned_rates import load_rates, remember_rates
from engine.output import OutputFiles
from engine.persona.export import export_pairs
from engine.persona.graph import PersonaGraph
from engine.persona.run import PersonaRunOptions, SettingsChanged, prepare_graph
from engine.prices import Price, PriceTableError, load_prices
from engine.progress import ProgressReporter
from engine.queue import EnqueueConflict
from engine.run import Coordinator, RunConfig, RunStats
from engine.rundir import RunDirBusy, lock_run_dir, queue_path
from engine.simproc import local_simulator
from engine.sqlite_queue import SQLiteQueue
from ratelimits.breaker import BreakerConfig, CircuitBreaker
from ratelimits.clock import LoopClock
from ratelimits.learned import LearnConfig, LearnerRegistry
from ratelimits.limiter import LimiterRegistry, LimitsConfig
from schemas.job import Status
from workers.client import AiohttpTransport, ChatTransport
from workers.dispatch import Dispatcher, Validator
from workers.ratelimited import RateLimitedJobs, RateLimitPolicy

log = structlog.get_logger()


class GenerateOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    run_dir: Path
    requests: Path | None
    base_url: str | None
    api_key_env: str = "OPENAI_API_KEY"
    transport: str = "aiohttp"
    simulator_args: tuple[str, ...] = ()
    progress: bool | None = None  # None: on a terminal only
    run: RunConfig = RunConfig()
    cache_path: Path | None = None  # None: no cache, no deduplication
    limits: LimitsConfig | None = None  # None: no client-side rate limit
    persona: PersonaRunOptions = PersonaRunOptions()  # used when `requests` is None
    prices_path: Path | None = None
    # issue 15: 429s spend no attempt (give-up ceiling), the allowed rate is learned (None: off)
    # and remembered in `rates_path` (None: not remembered)
    rate_limit: RateLimitPolicy = RateLimitPolicy()
    learn: LearnConfig | None = LearnConfig()
    rates_path: Path | None = None


async def generate(options: GenerateOptions) -> int:
    options.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = lock_run_dir(options.run_dir)
    except RunDirBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with lock:
        queue = await SQLiteQueue.open(queue_path(options.run_dir), options.cache_path)
        try:
            return await _generate(queue, options)
        finally:
            await queue.close()


async def _prepare(queue: SQLiteQueue, options: GenerateOptions) -> PersonaGraph | None:
    """Enqueue the request file, or the PERSONA graph when there is none."""
    if options.requests is not None:
        await enqueue_file(queue, options.requests)
        return None
    graph = await prepare_graph(queue, options.persona)
    queue.set_graph(graph.expand, graph.materialize)
    return graph


async def _generate(queue: SQLiteQueue, options: GenerateOptions) -> int:
    try:
        prices = load_prices(options.prices_path)
        graph = await _prepare(queue, options)
    except (InputError, SettingsChanged, PriceTableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("nothing was enqueued", file=sys.stderr)
        return EXIT_USAGE
    code = await _execute(queue, options, graph, prices)
    if graph is not None and code != EXIT_INTERRUPTED:
        exported = await queue.run_sync(lambda db: export_pairs(db, options.run_dir, prices))
        print(f"exported {exported} pairs -> {options.run_dir / 'pairs.jsonl'} (+ .dpo, .release)")
    return code


async def _execute(
    queue: SQLiteQueue,
    options: GenerateOptions,
    graph: PersonaGraph | None,
    prices: dict[str, Price],
) -> int:
    orphans = await queue.reset_running()
    if orphans:
        log.info("queue.recovered", jobs_back_to_queue=orphans)
    crash = CrashPoints.from_env()
    output = OutputFiles(options.run_dir, crash, prices)
    try:
        await output.recover(queue)
        counts = await queue.counts()
        if counts.total == 0:
            print("error: the queue is empty: give --requests FILE", file=sys.stderr)
            return EXIT_USAGE
        if counts.count(Status.QUEUED) == 0:
            print(
                f"run already complete: {counts.count(Status.DONE)} done, "
                f"{counts.count(Status.FAILED)} failed; nothing to do ({options.run_dir})"
            )
            return _exit_code(counts.count(Status.FAILED), interrupted=False)
        finished_before = counts.count(Status.DONE) + counts.count(Status.FAILED)
        async with _endpoint(options) as base_url:
            validator = graph.validate if graph is not None else None
            dispatcher = _dispatcher(options, base_url, validator)
            coordinator = Coordinator(queue, dispatcher, output, options.run, crash=crash)
            try:
                return await _run(queue, coordinator, options, counts.total, finished_before)
            finally:
                await remember_rates(queue, dispatcher.learners, base_url, options.rates_path)
                await dispatcher.close()
    finally:
        output.close()


async def enqueue_file(queue: SQLiteQueue, path: Path) -> int:
    """Enqueue a Batch API request file unless this exact file was enqueued already."""
    key, signature = _source_signature(path)
    if await queue.get_meta(key) == signature:
        return 0
    try:
        added = await queue.enqueue(read_batch_requests(path))
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


@contextlib.asynccontextmanager
async def _endpoint(options: GenerateOptions) -> AsyncIterator[str]:
    base_url = options.base_url or os.environ.get("OPENAI_BASE_URL")
    if base_url:
        yield base_url
        return
    async with local_simulator(options.simulator_args) as url:
        print(f"no --base-url or OPENAI_BASE_URL: using the built-in simulator at {url}")
        yield url


def _dispatcher(options: GenerateOptions, base_url: str, validator: Validator | None) -> Dispatcher:
    clock = LoopClock()
    limits_config = options.limits
    learners = None
    if options.learn is not None:  # the learned rate paces through the limiter: always one
        limits_config = limits_config or LimitsConfig()
        start = load_rates(options.rates_path, base_url) if options.rates_path else {}
        learners = LearnerRegistry(options.learn, clock, start_rpm=start)
    limits = LimiterRegistry(limits_config, clock) if limits_config is not None else None
    rng = random.Random(options.run.seed)
    return Dispatcher(
        _transport(options, base_url),
        options.run.retry,
        # probes 0.25 s to 30 s apart, 2.5 % of the outage so far: the API's return is noticed
        # within 2.5 % of the outage's length, for about 300 cheap requests in an hour-long one
        CircuitBreaker(BreakerConfig(), clock),
        limits,
        rng,
        coalesce=options.cache_path is not None,
        validator=validator,
        learners=learners,
        rate_limited=RateLimitedJobs(options.rate_limit, rng),
    )


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
    return AiohttpTransport(base_url, api_key, run.concurrency, run.timeout_s)


async def _run(
    queue: SQLiteQueue,
    coordinator: Coordinator,
    options: GenerateOptions,
    total: int,
    finished_before: int,
) -> int:
    interactive = sys.stderr.isatty() if options.progress is None else options.progress
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
    log.info("run.finished" if not interrupted else "run.interrupted", **summary)
    if interrupted:
        print(
            f"stopped: {stats.done + stats.failed} jobs finished in this run, "
            f"{counts.count(Status.QUEUED)} left; run the same command to resume"
        )
    else:
        print(
            f"complete: {counts.count(Status.DONE)} done, {counts.count(Status.FAILED)} failed "
            f"-> {options.run_dir}"
        )
    return _exit_code(counts.count(Status.FAILED), interrupted)


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
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if coordinator.stopping:
            os._exit(EXIT_INTERRUPTED)
        print(
            f"{signal.Signals(signum).name}: stopping (in-flight calls get the grace period; "
            "signal again to exit now)",
            file=sys.stderr,
        )
        coordinator.request_stop()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
