"""The Batch API executor: ready jobs into batches, batches polled, results committed, in waves.

    recover   open batches of an earlier process: PREPARED (nothing sent) -> jobs back to the
              queue; UPLOADED (a create may or may not have reached the provider) -> the batch
              made from that input file is looked up, and created only if there is none;
              SUBMITTED -> polled like the others
    fill      while fewer than --batch-max-open are open and the enqueued-token cap has room:
              claim ready jobs, build their requests, answer cached ones at once, write input
              lines up to --batch-max-requests / --batch-max-bytes; then, each step recorded
              before the next relies on it: batch_open (members, PREPARED) -> upload ->
              record the file id (UPLOADED) -> create -> record the batch id (SUBMITTED)
    poll      each open batch when its next poll falls due (waits growing by the backoff);
              a terminal one is collected: output and error files downloaded, one outcome per
              member (engine.batch.lines), lines appended to the output files, then committed
              together with closing the batch (`batch_settle`): children become ready, and the
              next fill sends them (the next wave)

Stops: the first SIGINT/SIGTERM sends nothing new and keeps polling for --grace-s, then exits
with the open batches left open (the next run polls them); a second signal, or --batch-cancel,
cancels the open batches and keeps what they delivered; a third exits at once. A SIGKILL at any
point loses nothing and submits nothing twice: see `recover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator

import msgspec
import structlog
from openai.types import Batch

from engine.batch.config import USAGE_KEY, BatchConfig
from engine.batch.lines import BatchEnd, input_line, outcomes_of
from engine.crashpoints import NONE as NO_CRASH
from engine.crashpoints import CrashPoints
from engine.exits import EXIT_INTERRUPTED
from engine.output import OutputFiles, row_of
from engine.pipeline import Pipeline
from engine.queue import WorkQueue
from schemas.batches import BatchMember, BatchRow, BatchState
from schemas.job import ClaimedJob, Done, Failed, Outcome, Released
from workers.batch_api import BatchApi, BatchApiError, request_counts
from workers.executor import RetryPolicy, from_cache
from workers.loops import on_stop_signals

log = structlog.get_logger()

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_CLAIM_CHUNK = 1000
_CREATE_TRIES = 3
_usage_decoder = msgspec.json.Decoder(dict[str, list[int]])


class BatchCreateRefused(BatchApiError):
    """The provider refused to create a batch, again and again: the run stops."""


class BatchRunStats(msgspec.Struct):
    waves: int = 0
    batches: int = 0  # submitted by this process
    done: int = 0
    failed: int = 0
    retried: int = 0  # sent back to the queue (error lines, lines not run)
    cached: int = 0


class _Open:
    """An open batch as this process tracks it (the row is the durable part)."""

    def __init__(self, row: BatchRow, next_poll: float, wait_s: float) -> None:
        self.row = row
        self.next_poll = next_poll
        self.wait_s = wait_s
        self.create_tries = 0


class BatchRunner:
    def __init__(
        self,
        queue: WorkQueue,
        api: BatchApi,
        pipeline: Pipeline,
        output: OutputFiles,
        config: BatchConfig,
        retry: RetryPolicy,
        run_name: str,
        *,
        lease_s: float = 600.0,
        grace_s: float = 30.0,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        crash: CrashPoints = NO_CRASH,
    ) -> None:
        self._queue = queue
        self._api = api
        self._pipeline = pipeline
        self._output = output
        self._config = config
        self._retry = retry
        self._run_name = run_name[-200:]  # metadata values are at most 512 characters
        self._lease_s = lease_s
        self._grace_s = grace_s
        self._rng = random.Random(seed)
        self._clock = clock
        self._crash = crash
        self._open: dict[str, _Open] = {}
        self._next_key = 1
        self._usage: dict[str, list[int]] = {}
        self._wake = asyncio.Event()
        self.stopping = False
        self.cancelling = config.cancel
        self._stop_deadline: float | None = None
        self._fill_after = 0.0  # after a failed upload, send nothing before this
        self.stats = BatchRunStats()
        self.cancelled = 0

    # -- stops -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stopping = True
        self._stop_deadline = self._clock() + self._grace_s
        self._wake.set()

    def request_cancel(self) -> None:
        self.stopping = True
        self.cancelling = True
        self._wake.set()

    @property
    def interrupted(self) -> bool:
        return self.stopping or self.cancelling

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> BatchRunStats:
        await self._api.probe()  # BatchApiMissing before anything is claimed or sent
        await self._load()
        cancel_sent = False
        while True:
            if self.cancelling and not cancel_sent:
                await self._cancel_open()
                cancel_sent = True
            if not self.interrupted:
                await self._fill()
            if not self._open:
                if self.interrupted:
                    break
                next_due = await self._queue.next_due()
                if next_due is None:
                    break
                await self._sleep(max(next_due, self._fill_after) - self._clock())
                continue
            if self._past_grace():
                log.info("batch.left_open", batches=len(self._open))
                break
            await self._poll_due()
            if self._open:
                soonest = min(o.next_poll for o in self._open.values())
                await self._sleep(soonest - self._clock())
        return self.stats

    async def _load(self) -> None:
        """Read what earlier processes left: counters, and their open batches to recover."""
        every = await self._queue.batches(include_closed=True)
        self._next_key = len(every) + 1
        self._usage = _usage_decoder.decode((await self._queue.get_meta(USAGE_KEY)) or "{}")
        self.stats.waves = max((row.wave for row in every), default=0)
        for row in every:
            if row.state is not BatchState.CLOSED:
                await self._recover(row)

    def _past_grace(self) -> bool:
        return (
            not self.cancelling
            and self._stop_deadline is not None
            and self._clock() >= self._stop_deadline
        )

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    # -- recovery --------------------------------------------------------------------------

    async def _recover(self, row: BatchRow) -> None:
        tracked = _Open(row, self._clock(), self._config.poll_s)
        if row.state is BatchState.PREPARED:  # nothing was created from it: free its jobs
            await self._give_back(tracked, "never_submitted")
            return
        self._open[row.key] = tracked
        if row.state is BatchState.UPLOADED:
            await self._resolve_uploaded(tracked)
        log.info("batch.resumed", batch=row.key, batch_id=row.batch_id, state=row.state.value)

    async def _resolve_uploaded(self, tracked: _Open, create: bool = True) -> None:
        """An uploaded batch whose create may have reached the provider: use the batch made
        from its input file if there is one, else create it (`create` False: give its jobs
        back instead). After `_CREATE_TRIES` failed creates its jobs go back to the queue and
        the run stops (BatchCreateRefused): a provider that keeps refusing is not retried
        forever."""
        row = tracked.row
        assert row.input_file_id is not None
        found = await self._api.find_by_input_file(row.input_file_id)
        if found is None and not create:
            await self._give_back(tracked, "never_created")
            return
        if found is None:
            tracked.create_tries += 1
            try:
                found = await self._api.create(row.input_file_id, self._metadata(row))
            except BatchApiError as exc:
                log.warning("batch.create_failed", batch=row.key, error=str(exc))
                if tracked.create_tries >= _CREATE_TRIES:
                    await self._give_back(tracked, "create_failed")
                    raise BatchCreateRefused(str(exc)) from None
                tracked.next_poll = self._clock() + tracked.wait_s
                return
            self._crash.reach("batch_created")
        await self._submitted(tracked, found)

    async def _give_back(self, tracked: _Open, why: str) -> None:
        """Close a batch that was never created: its jobs go back to the queue."""
        row = tracked.row
        members = await self._queue.batch_members(row.key)
        row.state, row.closed_at, row.provider_status = BatchState.CLOSED, self._clock(), why
        await self._queue.batch_settle(row, [Released(j.seq) for j, _ in members], {})
        self._open.pop(row.key, None)
        log.info("batch.given_back", batch=row.key, jobs=len(members), why=why)

    async def _submitted(self, tracked: _Open, batch: Batch) -> None:
        row = tracked.row
        row.batch_id, row.state = batch.id, BatchState.SUBMITTED
        row.submitted_at = row.submitted_at or self._clock()
        row.provider_status = batch.status
        await self._queue.batch_update(row)
        self._crash.reach("batch_submitted")
        tracked.wait_s = self._config.poll_s
        tracked.next_poll = self._clock() + tracked.wait_s

    def _metadata(self, row: BatchRow) -> dict[str, str]:
        return {"persona_testbed_run": self._run_name, "batch_key": row.key}

    # -- filling ---------------------------------------------------------------------------

    def _enqueued_tokens(self) -> int:
        return sum(o.row.est_tokens for o in self._open.values())

    async def _fill(self) -> None:
        submitted = 0
        while len(self._open) < self._config.max_open and not self.interrupted:
            cap = self._config.max_enqueued_tokens
            room = None if cap is None else cap - self._enqueued_tokens()
            if room is not None and room <= 0 and self._open:
                break  # wait for room: an open batch must finish first
            if self._clock() < self._fill_after:
                break
            lines, members, tokens = await self._take(room)
            if not lines:
                break
            try:
                await self._submit(lines, members, tokens)
            except BatchApiError as exc:  # its jobs are back in the queue: try again later
                log.warning("batch.upload_failed", error=str(exc))
                self._fill_after = self._clock() + self._config.poll_max_s
                break
            submitted += 1
        if submitted:
            self.stats.waves += 1  # the batches just sent carry its number (BatchRow.wave)

    async def _take(self, room: int | None) -> tuple[list[bytes], list[ClaimedJob], int]:
        """Claim ready jobs for one batch within the limits; cached ones are answered now,
        claimed ones that do not fit go back to the queue."""
        config = self._config
        lines: list[bytes] = []
        members: list[ClaimedJob] = []
        size = tokens = 0
        while len(lines) < config.max_requests:
            want = min(_CLAIM_CHUNK, config.max_requests - len(lines))
            claimed = await self._queue.claim(want, self._clock(), self._lease_s)
            if not claimed:
                break
            jobs = await self._pipeline.build_requests(self._queue, claimed)
            cache = await self._queue.cached_results([j.fingerprint for j in jobs])
            now_outcomes: list[Outcome] = []
            full = False
            for job in jobs:
                hit = cache.get(job.fingerprint)
                if hit is not None:
                    now_outcomes.append(from_cache(job, hit, self._clock()))
                    continue
                line = input_line(job.id, job.payload)
                fits = (
                    len(lines) < config.max_requests
                    and size + len(line) <= config.max_bytes
                    and (room is None or tokens + job.est_tokens <= room)
                )
                alone = not lines and not self._open  # one job over the limits goes alone
                if full or not (fits or alone):
                    full = True
                    now_outcomes.append(Released(job.seq))
                    continue
                lines.append(line)
                members.append(job)
                size += len(line)
                tokens += job.est_tokens
            if now_outcomes:
                await self._commit(now_outcomes)
            if full:
                break
        return lines, members, tokens

    async def _commit(self, outcomes: list[Outcome]) -> None:
        finished = [row_of(o) for o in outcomes if isinstance(o, Done | Failed)]
        meta = self._output.append(finished)
        await self._queue.commit(outcomes, meta)
        for outcome in outcomes:
            if isinstance(outcome, Done):
                self.stats.done += 1
                self.stats.cached += 1

    async def _submit(self, lines: list[bytes], jobs: list[ClaimedJob], tokens: int) -> None:
        key = f"b{self._next_key:06d}"
        self._next_key += 1
        data = b"".join(lines)
        row = BatchRow(
            key=key,
            state=BatchState.PREPARED,
            requests=len(lines),
            bytes=len(data),
            est_tokens=tokens,
            created_at=self._clock(),
            wave=self.stats.waves + 1,
        )
        members = [BatchMember(j.seq, j.id, j.fingerprint) for j in jobs]
        await self._queue.batch_open(row, members)
        self._crash.reach("batch_prepared")
        tracked = _Open(row, self._clock(), self._config.poll_s)
        self._open[key] = tracked
        try:
            row.input_file_id = await self._api.upload(f"{key}.jsonl", data)
        except BatchApiError:
            await self._give_back(tracked, "upload_failed")
            raise
        row.state = BatchState.UPLOADED
        await self._queue.batch_update(row)
        self._crash.reach("batch_uploaded")
        try:
            batch = await self._api.create(row.input_file_id, self._metadata(row))
        except BatchApiError as exc:  # it may exist all the same: resolved on the next poll
            log.warning("batch.create_failed", batch=key, error=str(exc))
            return
        self._crash.reach("batch_created")
        await self._submitted(tracked, batch)
        self.stats.batches += 1
        log.info(
            "batch.submitted", batch=key, batch_id=batch.id, requests=len(lines), wave=row.wave
        )

    # -- polling and collecting -------------------------------------------------------------

    async def _poll_due(self) -> None:
        now = self._clock()
        for tracked in sorted(self._open.values(), key=lambda o: o.next_poll):
            if tracked.next_poll > now:
                continue
            try:
                if await self._poll(tracked):
                    continue
            except BatchCreateRefused:
                raise
            except BatchApiError as exc:  # the provider is unreachable: poll again later
                log.warning("batch.poll_failed", batch=tracked.row.key, error=str(exc))
            tracked.next_poll = self._clock() + tracked.wait_s
            tracked.wait_s = min(
                tracked.wait_s * self._config.poll_backoff, self._config.poll_max_s
            )

    async def _poll(self, tracked: _Open) -> bool:
        """Poll one batch; True when it was collected (or its next poll is already set)."""
        row = tracked.row
        if row.state is BatchState.UPLOADED:
            await self._resolve_uploaded(tracked)
            return True
        assert row.batch_id is not None
        batch = await self._api.retrieve(row.batch_id)
        if batch.status in TERMINAL:
            await self._collect(tracked, batch)
            return True
        if batch.status != row.provider_status:
            counts = request_counts(batch)
            row.provider_status = batch.status
            row.completed, row.failed = counts["completed"], counts["failed"]
            await self._queue.batch_update(row)
        return False

    async def _collect(self, tracked: _Open, batch: Batch) -> None:
        row = tracked.row
        members = await self._queue.batch_members(row.key)
        output = await self._api.content(batch.output_file_id) if batch.output_file_id else b""
        errors = await self._api.content(batch.error_file_id) if batch.error_file_id else b""
        failed_lines = {}
        if batch.status == "failed" and batch.errors is not None:
            for item in batch.errors.data or []:
                if item.line is not None:
                    failed_lines[item.line] = f"{item.code}: {item.message}"
        end = BatchEnd(
            batch.status, row.submitted_at or row.created_at, self._clock(), failed_lines
        )
        outcomes = outcomes_of(
            members, output, errors, end, self._retry, self._rng, self._pipeline.check
        )
        finished = [row_of(o) for o in outcomes if isinstance(o, Done | Failed)]
        meta = self._output.append(finished)
        meta[USAGE_KEY] = self._count_usage(outcomes)
        counts = request_counts(batch)
        row.state, row.closed_at, row.provider_status = (
            BatchState.CLOSED,
            self._clock(),
            batch.status,
        )
        row.completed, row.failed = counts["completed"], counts["failed"]
        self._crash.reach("batch_collected")
        await self._queue.batch_settle(row, outcomes, meta)
        del self._open[row.key]
        self._tally(outcomes)
        log.info(
            "batch.settled",
            batch=row.key,
            status=batch.status,
            done=sum(isinstance(o, Done) for o in outcomes),
            back_to_queue=sum(not isinstance(o, Done | Failed) for o in outcomes),
        )
        for file_id in (row.input_file_id, batch.output_file_id, batch.error_file_id):
            if file_id:
                try:
                    await self._api.delete(file_id)
                except BatchApiError as exc:  # only storage at the provider: note it, go on
                    log.warning("batch.file_not_deleted", file_id=file_id, error=str(exc))

    def _count_usage(self, outcomes: list[Outcome]) -> str:
        for o in outcomes:
            if isinstance(o, Done) and not o.cached:
                totals = self._usage.setdefault(o.model, [0, 0, 0])
                totals[0] += 1
                totals[1] += o.prompt_tokens
                totals[2] += o.completion_tokens
        return msgspec.json.encode(self._usage).decode()

    def _tally(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if isinstance(o, Done):
                self.stats.done += 1
            elif isinstance(o, Failed):
                self.stats.failed += 1
            else:
                self.stats.retried += 1

    async def _cancel_open(self) -> None:
        for tracked in list(self._open.values()):
            try:
                if tracked.row.state is BatchState.UPLOADED:
                    await self._resolve_uploaded(tracked, create=False)
                if tracked.row.batch_id is not None:
                    await self._api.cancel(tracked.row.batch_id)
                    self.cancelled += 1
            except BatchApiError as exc:  # e.g. it ended meanwhile: collected as it is
                log.warning("batch.cancel_failed", batch=tracked.row.key, error=str(exc))
            tracked.next_poll = self._clock()
            tracked.wait_s = self._config.poll_s


@contextlib.contextmanager
def stop_on_signals(runner: BatchRunner) -> Iterator[None]:
    """First SIGINT/SIGTERM: send nothing new, poll for the grace period, leave the rest open.
    Second: cancel the open batches (what they delivered is kept). Third: exit at once."""

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if runner.cancelling:
            os._exit(EXIT_INTERRUPTED)  # the queue loses nothing; open batches resume
        if runner.stopping:
            print(
                f"{name}: cancelling the open batches (what they delivered is kept)",
                file=sys.stderr,
            )
            runner.request_cancel()
            return
        print(
            f"{name}: stopping (no new batches; open ones stay open and resume on the next run; "
            "signal again to cancel them)",
            file=sys.stderr,
        )
        runner.request_stop()

    with on_stop_signals(on_signal):
        yield


async def run_batches(
    queue: WorkQueue,
    api: BatchApi,
    pipeline: Pipeline,
    output: OutputFiles,
    config: BatchConfig,
    retry: RetryPolicy,
    run_name: str,
    *,
    lease_s: float,
    grace_s: float,
    seed: int,
    crash: CrashPoints,
) -> tuple[BatchRunner, BatchRunStats]:
    """Run the queue's jobs through the Batch API until none is left (or a stop)."""
    runner = BatchRunner(
        queue, api, pipeline, output, config, retry, run_name,
        lease_s=lease_s, grace_s=grace_s, seed=seed, crash=crash,
    )  # fmt: skip
    with stop_on_signals(runner):
        stats = await runner.run()
    return runner, stats
