"""The in-memory backend of the work queue: the same contract, no file.

For fast in-process tests of the coordinator and the pipelines (as procrastinate's
`InMemoryConnector`), and a reference of the contract's meaning in plain Python. Nothing
survives the process. A response cache, when given a `CacheSpec`, lives in this object too
(its `path` is not used): `MemoryQueue.shared_cache` lets two queues share one, as two runs
share one cache file.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from typing import Self

import msgspec

from engine.queue import CacheSpec, EnqueueConflict, Record, failure_codes
from schemas.batches import BatchMember, BatchRow, BatchState
from schemas.job import (
    CachedResult,
    ClaimedJob,
    Done,
    Failed,
    ModelUsage,
    NewJob,
    Outcome,
    QueueCounts,
    Released,
    Retry,
    Status,
    TerminalRow,
)

_error_encoder = msgspec.json.Encoder()
#: (scope, fingerprint) -> cached response
Cache = dict[tuple[str, str], CachedResult]


class _Row:
    """One job, mutable, as the SQLite backend's row."""

    __slots__ = (
        "attempts",
        "cached",
        "completion_tokens",
        "error",
        "est_tokens",
        "fingerprint",
        "finished_at",
        "first_started_at",
        "id",
        "latency_ms",
        "lease_until",
        "model",
        "next_run_at",
        "parent_id",
        "payload",
        "prompt_tokens",
        "request_id",
        "result",
        "seq",
        "stage",
        "status",
        "status_code",
    )

    def __init__(self, seq: int, job: NewJob) -> None:
        self.seq = seq
        self.id = job.id
        self.stage = job.stage
        self.model = job.model
        self.parent_id = job.parent_id
        self.est_tokens = job.est_tokens
        self.status = Status.QUEUED if job.parent_id is None else Status.WAITING
        self.attempts = 0
        self.next_run_at = 0.0
        self.lease_until: float | None = None
        self.fingerprint = job.fingerprint
        self.payload = job.payload
        self.result: bytes | None = None
        self.error: bytes | None = None
        self.status_code: int | None = None
        self.request_id: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.latency_ms: float | None = None
        self.cached = False
        self.first_started_at: float | None = None
        self.finished_at: float | None = None

    def terminal(self) -> TerminalRow:
        return TerminalRow(
            self.seq,
            self.id,
            self.status,
            self.attempts,
            self.result,
            self.error,
            self.status_code,
            self.request_id,
            self.prompt_tokens,
            self.completion_tokens,
            self.latency_ms,
            self.first_started_at,
            self.finished_at,
            self.cached,
            self.model,
        )


class MemoryQueue:
    """`engine.queue.WorkQueue` in this process's memory."""

    def __init__(self, cache: CacheSpec | None = None, shared_cache: Cache | None = None) -> None:
        self._rows: dict[int, _Row] = {}
        self._by_id: dict[str, _Row] = {}
        self._children: dict[str, list[_Row]] = {}
        self._seq = itertools.count(1)
        self._meta: dict[str, str] = {}
        self._records: dict[str, dict[str, bytes]] = {}
        self._batches: dict[str, BatchRow] = {}
        self._members: dict[str, list[BatchMember]] = {}  # open batches only
        self._in_batch: set[int] = set()
        self._scope = cache.scope if cache is not None else None
        self.shared_cache: Cache = shared_cache if shared_cache is not None else {}

    @classmethod
    async def open(cls, cache: CacheSpec | None = None, shared_cache: Cache | None = None) -> Self:
        return cls(cache, shared_cache)

    async def close(self) -> None:
        return None

    # -- enqueue ---------------------------------------------------------------------------

    async def enqueue(
        self,
        jobs: Iterable[NewJob],
        records: Mapping[str, Iterable[Record]] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> int:
        # read every input first: an error while iterating (or a conflict) changes nothing
        staged_records = {kind: list(items) for kind, items in (records or {}).items()}
        fresh = self._check(jobs)
        for kind, items in staged_records.items():
            known = self._records.setdefault(kind, {})
            for key, value in items:
                known.setdefault(key, value)
        self._meta.update(meta or {})
        for job in fresh:
            row = _Row(next(self._seq), job)
            self._rows[row.seq] = row
            self._by_id[row.id] = row
            if row.parent_id is not None:
                self._children.setdefault(row.parent_id, []).append(row)
        return len(fresh)

    def _check(self, jobs: Iterable[NewJob]) -> list[NewJob]:
        """The new jobs of `jobs`; EnqueueConflict for an id reused with another body."""
        seen: dict[str, NewJob] = {}
        first_conflict: EnqueueConflict | None = None
        for job in jobs:
            earlier = seen.get(job.id)
            if earlier is None:
                seen[job.id] = job
            elif earlier.fingerprint != job.fingerprint and first_conflict is None:
                first_conflict = EnqueueConflict(job.id, job.line, earlier.line)
        if first_conflict is not None:
            raise first_conflict
        known = self._by_id
        clash = [
            j for j in seen.values() if j.id in known and known[j.id].fingerprint != j.fingerprint
        ]
        if clash:
            job = min(clash, key=lambda j: j.line)
            raise EnqueueConflict(job.id, job.line, None)
        return [j for j in seen.values() if j.id not in self._by_id]

    # -- claim, commit ---------------------------------------------------------------------

    async def claim(self, limit: int, now: float, lease_s: float) -> list[ClaimedJob]:
        claimed: list[ClaimedJob] = []
        for row in self._rows.values():  # insertion order = seq order
            if len(claimed) >= limit:
                break
            if row.status is Status.QUEUED and row.next_run_at <= now:
                row.status = Status.RUNNING
                row.lease_until = now + lease_s
                claimed.append(
                    ClaimedJob(
                        row.seq,
                        row.id,
                        row.stage,
                        row.attempts,
                        row.fingerprint,
                        row.payload,
                        row.first_started_at,
                        row.model,
                        row.est_tokens,
                    )
                )
        return claimed

    async def commit(self, outcomes: Sequence[Outcome], meta: Mapping[str, str]) -> None:
        for outcome in outcomes:
            row = self._rows[outcome.seq]
            if isinstance(outcome, Released):
                row.status = Status.QUEUED
                row.lease_until = None
                continue
            if row.status is not Status.RUNNING:
                continue
            match outcome:
                case Done():
                    self._done(row, outcome)
                case Retry():
                    row.status = Status.QUEUED
                    row.attempts += int(outcome.spend_attempt)
                    row.next_run_at = outcome.next_run_at
                    row.error = _error_encoder.encode(outcome.error)
                    row.first_started_at = row.first_started_at or outcome.started_at
                    row.lease_until = None
                case Failed():
                    row.status = Status.FAILED
                    row.attempts = outcome.attempts
                    row.error = _error_encoder.encode(outcome.error)
                    row.status_code = outcome.error.status_code
                    row.request_id = outcome.request_id
                    row.first_started_at = row.first_started_at or outcome.first_started_at
                    row.finished_at = outcome.finished_at
                    row.lease_until = None
        self._meta.update(meta)

    def _done(self, row: _Row, o: Done) -> None:
        row.status = Status.DONE
        row.attempts = o.attempts
        row.result = o.body
        row.status_code = o.status_code
        row.request_id = o.request_id
        row.prompt_tokens = o.prompt_tokens
        row.completion_tokens = o.completion_tokens
        row.latency_ms = o.latency_ms
        row.cached = o.cached
        row.first_started_at = row.first_started_at or o.first_started_at
        row.finished_at = o.finished_at
        row.lease_until = None
        row.error = None
        for child in self._children.get(row.id, ()):
            if child.status is Status.WAITING:
                child.status = Status.QUEUED
        if not o.cached and self._scope is not None:
            key = (self._scope, o.fingerprint)
            self.shared_cache.setdefault(
                key, CachedResult(o.body, o.prompt_tokens, o.completion_tokens)
            )

    # -- reads -----------------------------------------------------------------------------

    async def cached_results(self, fingerprints: Sequence[str]) -> dict[str, CachedResult]:
        if self._scope is None:
            return {}
        scope = self._scope
        hits = {fp: self.shared_cache.get((scope, fp)) for fp in fingerprints}
        return {fp: hit for fp, hit in hits.items() if hit is not None}

    async def done_rows(self, job_ids: Sequence[str]) -> dict[str, TerminalRow]:
        rows = (self._by_id.get(job_id) for job_id in job_ids)
        return {r.id: r.terminal() for r in rows if r is not None and r.status is Status.DONE}

    async def iter_records(self, kind: str, chunk: int = 2000) -> AsyncIterator[Record]:
        for item in list(self._records.get(kind, {}).items()):
            yield item

    async def renew(self, seqs: Sequence[int], lease_until: float) -> None:
        for seq in seqs:
            row = self._rows[seq]
            if row.status is Status.RUNNING:
                row.lease_until = lease_until

    async def sweep(self, now: float) -> int:
        expired = [
            r
            for r in self._rows.values()
            if r.status is Status.RUNNING
            and r.lease_until is not None
            and r.lease_until < now
            and r.seq not in self._in_batch
        ]
        for row in expired:
            row.status = Status.QUEUED
            row.lease_until = None
        return len(expired)

    async def reset_running(self) -> int:
        running = [
            r
            for r in self._rows.values()
            if r.status is Status.RUNNING and r.seq not in self._in_batch
        ]
        for row in running:
            row.status = Status.QUEUED
            row.lease_until = None
        return len(running)

    async def requeue_failed(self, codes: Collection[str] = ()) -> int:
        wanted = frozenset(codes)
        picked = [
            r
            for r in self._rows.values()
            if r.status is Status.FAILED and (not wanted or failure_codes(r.error) & wanted)
        ]
        for row in picked:
            row.status = Status.QUEUED
            row.attempts = 0
            row.next_run_at = 0.0
            row.lease_until = None
            row.finished_at = None
        return len(picked)

    async def has_running(self) -> bool:
        return any(r.status is Status.RUNNING for r in self._rows.values())

    async def next_due(self) -> float | None:
        due = [r.next_run_at for r in self._rows.values() if r.status is Status.QUEUED]
        return min(due) if due else None

    async def counts(self) -> QueueCounts:
        by_status: dict[str, int] = {}
        by_stage: dict[str, dict[str, int]] = {}
        by_model: dict[str, ModelUsage] = {}
        for r in self._rows.values():
            by_status[r.status.value] = by_status.get(r.status.value, 0) + 1
            stage = by_stage.setdefault(r.stage, {})
            stage[r.status.value] = stage.get(r.status.value, 0) + 1
            if r.status is Status.DONE:
                usage = by_model.setdefault(r.model, ModelUsage())
                usage.done += 1
                usage.cached += int(r.cached)
                usage.prompt_tokens += r.prompt_tokens
                usage.completion_tokens += r.completion_tokens
                if not r.cached:
                    usage.paid_prompt_tokens += r.prompt_tokens
                    usage.paid_completion_tokens += r.completion_tokens
        rows = list(self._rows.values())
        starts = [r.first_started_at for r in rows if r.first_started_at is not None]
        ends = [r.finished_at for r in rows if r.finished_at is not None]
        return QueueCounts(
            by_status=by_status,
            by_stage=by_stage,
            attempts=sum(r.attempts for r in rows),
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows),
            first_started_at=min(starts) if starts else None,
            last_finished_at=max(ends) if ends else None,
            next_run_at=await self.next_due(),
            by_model=by_model,
        )

    async def iter_terminal(
        self, chunk: int = 2000, *, failed_only: bool = False
    ) -> AsyncIterator[TerminalRow]:
        wanted = (Status.FAILED,) if failed_only else (Status.DONE, Status.FAILED)
        for row in list(self._rows.values()):
            if row.status in wanted:
                yield row.terminal()

    async def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    async def set_meta(self, values: Mapping[str, str]) -> None:
        self._meta.update(values)

    # -- Batch API bookkeeping -------------------------------------------------------------

    async def batch_open(self, batch: BatchRow, members: Sequence[BatchMember]) -> None:
        taken = [m.seq for m in members if m.seq in self._in_batch]
        if batch.key in self._batches or taken:
            raise ValueError(f"batch {batch.key} or its jobs {taken} are already recorded")
        self._batches[batch.key] = msgspec.structs.replace(batch)
        self._members[batch.key] = list(members)
        self._in_batch.update(m.seq for m in members)

    async def batch_update(self, batch: BatchRow) -> None:
        if batch.key in self._batches:
            self._batches[batch.key] = msgspec.structs.replace(batch)

    async def batches(self, include_closed: bool = False) -> list[BatchRow]:
        rows = sorted(self._batches.values(), key=lambda b: b.key)
        return [
            msgspec.structs.replace(b)
            for b in rows
            if include_closed or b.state is not BatchState.CLOSED
        ]

    async def batch_members(self, key: str) -> list[tuple[ClaimedJob, str]]:
        found = []
        for m in self._members.get(key, []):
            r = self._rows[m.seq]
            job = ClaimedJob(
                r.seq, r.id, r.stage, r.attempts, m.fingerprint, b"", r.first_started_at,
                r.model, r.est_tokens,
            )  # fmt: skip
            found.append((job, m.custom_id))
        return found

    async def batch_settle(
        self, batch: BatchRow, outcomes: Sequence[Outcome], meta: Mapping[str, str]
    ) -> None:
        for m in self._members.pop(batch.key, []):
            self._in_batch.discard(m.seq)
        await self.commit(outcomes, meta)
        self._batches[batch.key] = msgspec.structs.replace(batch)
