"""The coordinator: feeder → workers → one writer, around the durable queue.

    run():  start the writer, the sweeper and N workers
            → feed (claim batches, hand them to workers) until no work remains or a stop
            → drain the workers (graceful: let in-flight calls finish within the grace period,
              then cancel them and put their jobs back)
            → close the writer (every outcome committed, output files in step)

The database is the truth: a job is only finished when the writer's transaction that records
it (together with the output files' committed sizes) has committed.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

import msgspec
import structlog

from engine.abandoned import AbandonedCounter, abandoned_calls
from engine.commit_waits import CommitWaits
from engine.crashpoints import NONE as NO_CRASH
from engine.crashpoints import CrashPoints
from engine.errors import StorageError
from engine.output import OutputFiles, row_of
from engine.pipeline import Pipeline
from engine.queue import WorkQueue
from engine.systematic import SystematicFailures
from schemas.job import ClaimedJob, Done, Failed, Outcome, Released, Retry
from workers.deadline import DeadlineConfig
from workers.dispatch import Dispatcher, DispatchStoppedError
from workers.executor import RetryPolicy, from_cache

log = structlog.get_logger()


class RunConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    concurrency: int = 64
    timeout_s: float = 120.0
    lease_s: float = 600.0
    grace_s: float = 30.0
    claim_batch: int = 256
    commit_batch: int = 1024
    sweep_every_s: float = 60.0
    retry: RetryPolicy = RetryPolicy()
    seed: int = 0
    deadline: DeadlineConfig = DeadlineConfig()  # adaptive, under timeout_s
    # issue 16: this many identical permanent rejections of a stage and model with no success
    # stop the run, those jobs back in the queue (engine.systematic); 0: never stop
    stop_after_same_errors: int = 10


class RunStats:
    """Counters the writer keeps as it commits; read by the progress display."""

    def __init__(self) -> None:
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.retried = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.in_flight = 0
        self.started = time.monotonic()

    def record(self, outcome: Outcome) -> None:
        match outcome:
            case Done():
                self.done += 1
                self.cached += outcome.cached
                self.prompt_tokens += outcome.prompt_tokens
                self.completion_tokens += outcome.completion_tokens
            case Failed():
                self.failed += 1
            case Retry():
                self.retried += 1
            case Released():
                pass


class Coordinator:
    def __init__(
        self,
        queue: WorkQueue,
        dispatcher: Dispatcher,
        output: OutputFiles,
        config: RunConfig,
        pipeline: Pipeline,
        clock: Callable[[], float] = time.time,
        crash: CrashPoints = NO_CRASH,
        systematic: SystematicFailures | None = None,
        shared_poll_s: float | None = None,
    ) -> None:
        # a queue shared with other processes (engine.fleet): others' commits release and
        # retry jobs unseen here, so the feeder looks again every `shared_poll_s`, and ends
        # only when no job is queued or running anywhere (None: this process owns the queue)
        self._shared_poll_s = shared_poll_s
        self._pipeline = pipeline
        # permanent failures held while they may be systematic (issue 16)
        self.systematic = systematic or SystematicFailures(config.stop_after_same_errors)
        self._crash = crash
        self._queue = queue
        self.dispatcher = dispatcher
        self._output = output
        self._config = config
        self._clock = clock
        self._buffer: asyncio.Queue[ClaimedJob | None] = asyncio.Queue(config.concurrency)
        self._outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()  # None: close
        self._held: dict[int, str] = {}  # claimed by us, not yet committed: seq → fingerprint
        self._held_fingerprints: collections.Counter[str] = collections.Counter()
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self.stats = RunStats()
        self.abandoned = AbandonedCounter()  # calls cut off by the adaptive deadline
        self._commit_waits = CommitWaits()  # a worker's next call waits for its last commit

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop claiming; in-flight calls get the grace period, jobs waiting at the breaker or
        the limiter (nothing sent) go back to the queue at once."""
        self._stop.set()
        self._release_buffered()
        self.dispatcher.stop_waiting()

    async def run(self) -> RunStats:
        self.abandoned = AbandonedCounter(await abandoned_calls(self._queue))
        async with asyncio.TaskGroup() as group:
            writer = group.create_task(self._write_loop(), name="writer")
            sweeper = group.create_task(self._sweep_loop(), name="sweeper")
            workers = [
                group.create_task(self._work_loop(), name=f"worker-{i}")
                for i in range(self._config.concurrency)
            ]
            await self._feed()
            await self._drain(workers)
            # held failures left: a stop came first (back to the queue), or none was systematic
            for outcome in self.systematic.release_all(as_failed=not self._stop.is_set()):
                self._outcomes.put_nowait(outcome)
            sweeper.cancel()
            self._outcomes.put_nowait(None)
            await writer
        return self.stats

    # -- feeding ---------------------------------------------------------------------------

    async def _feed(self) -> None:
        claim_size = min(self._config.claim_batch, self._config.concurrency)
        while not self._stop.is_set():
            self._changed.clear()
            jobs = await self._queue.claim(claim_size, self._clock(), self._config.lease_s)
            if jobs:
                self._crash.reach("after_claim")
                await self._hand_out(await self._pipeline.build_requests(self._queue, jobs))
                continue
            next_due = await self._queue.next_due()
            if (
                not self._held
                and next_due is None
                and (self._shared_poll_s is None or not await self._queue.has_running())
            ):
                return
            if next_due is None and self._held.keys() <= self.systematic.held_seqs:
                # nothing left but failures held as possibly systematic: they were not
                for outcome in self.systematic.release_all(as_failed=True):
                    self._outcomes.put_nowait(outcome)
            await self._wait_for_change(next_due)

    async def _hand_out(self, jobs: list[ClaimedJob]) -> None:
        """Answer cached requests at once; give the rest to the workers."""
        for job in jobs:
            self._held[job.seq] = job.fingerprint
            self._held_fingerprints[job.fingerprint] += 1
        cache = await self._queue.cached_results([job.fingerprint for job in jobs])
        for job in jobs:
            hit = cache.get(job.fingerprint)
            if hit is not None:
                self._outcomes.put_nowait(from_cache(job, hit, self._clock()))
            elif self._stop.is_set():
                self._outcomes.put_nowait(Released(job.seq))
            else:
                await self._buffer.put(job)  # `request_stop` empties the buffer: never stuck

    async def _wait_for_change(self, next_due: float | None) -> None:
        """Sleep until a commit, a stop, or the next retry falls due."""
        timeout = None if next_due is None else max(0.0, next_due - self._clock())
        if self._shared_poll_s is not None:
            timeout = self._shared_poll_s if timeout is None else min(timeout, self._shared_poll_s)
        waiters = [
            asyncio.ensure_future(self._changed.wait()),
            asyncio.ensure_future(self._stop.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # -- working ---------------------------------------------------------------------------

    async def _work_loop(self) -> None:
        while (job := await self._buffer.get()) is not None:
            if self._stop.is_set():
                self._outcomes.put_nowait(Released(job.seq))
                continue
            self.stats.in_flight += 1
            try:
                outcome: Outcome = await self.dispatcher.dispatch(job)
            except DispatchStoppedError:
                outcome = Released(job.seq)
            except asyncio.CancelledError:
                self._outcomes.put_nowait(Released(job.seq))
                raise
            finally:
                self.stats.in_flight -= 1
            committed = None
            for result in self.systematic.observe(job, outcome):
                if result.seq == job.seq:
                    committed = self._commit_waits.expect(job.seq)
                self._outcomes.put_nowait(result)
            if self.systematic.halt is not None and not self._stop.is_set():
                self.request_stop()
            if committed is None:
                self._changed.set()  # held: the feeder may find nothing else left
                continue
            await committed  # bounds paid-but-uncommitted calls by the workers (SIGKILL)

    def _release_buffered(self) -> None:
        """Jobs handed out but not yet taken by a worker go back to the queue. This also
        frees a feeder blocked on a full buffer (every worker in a call) and makes room for
        the workers' closing Nones, so a stop never waits for calls in flight to end."""
        while not self._buffer.empty():
            job = self._buffer.get_nowait()
            if job is not None:
                self._outcomes.put_nowait(Released(job.seq))

    async def _drain(self, workers: list[asyncio.Task[None]]) -> None:
        if self._stop.is_set():
            self._release_buffered()
        for _ in workers:
            await self._buffer.put(None)
        grace = self._config.grace_s if self._stop.is_set() else None
        _, pending = await asyncio.wait(workers, timeout=grace)
        if pending:
            log.warning("stop.cancelling_in_flight", calls=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    # -- committing ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        closing = False
        while not closing:
            batch: list[Outcome] = []
            item = await self._outcomes.get()
            while True:
                if item is None:
                    closing = True
                else:
                    batch.append(item)
                if len(batch) >= self._config.commit_batch or self._outcomes.empty():
                    break
                item = self._outcomes.get_nowait()
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[Outcome]) -> None:
        finished = [row_of(o) for o in batch if isinstance(o, Done | Failed)]
        mark = self._output.mark()
        try:
            meta = {**self._output.append(finished), **self.abandoned.meta_for(batch)}
            self._crash.reach("after_append")
            await self._queue.commit(batch, meta)
        except (StorageError, OSError):
            self._output.rollback(mark)  # a full disk: the lines of a batch not committed go
            raise
        for outcome in batch:
            self._release(outcome.seq)
            self.stats.record(outcome)
        self._commit_waits.committed(o.seq for o in batch)
        self._changed.set()

    def _release(self, seq: int) -> None:
        fingerprint = self._held.pop(seq)
        self._held_fingerprints[fingerprint] -= 1
        if not self._held_fingerprints[fingerprint]:
            del self._held_fingerprints[fingerprint]
            self.dispatcher.forget(fingerprint)

    # -- upkeep ----------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        """Renew our leases, and return leases that expired (a crashed owner's) to the queue.
        At least three renewals per lease: a short `--lease-s` never expires a held job."""
        every = min(self._config.sweep_every_s, self._config.lease_s / 3)
        while True:
            await asyncio.sleep(every)
            now = self._clock()
            await self._queue.renew(sorted(self._held), now + self._config.lease_s)
            swept = await self._queue.sweep(now)
            if swept:
                log.info("queue.swept", jobs=swept)
