"""The storage interface of the work queue.

The coordinator talks to this Protocol only; `engine.sqlite_queue.SQLiteQueue` is the one
backend today. A PostgreSQL backend (`FOR UPDATE SKIP LOCKED`) would be one more file that
passes the same contract tests (tests/test_queue.py).

Times are wall-clock seconds (time.time()): they are persisted and must mean the same thing
after a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Protocol

from schemas.job import CachedResult, ClaimedJob, NewJob, Outcome, QueueCounts, TerminalRow


class EnqueueConflict(Exception):
    """An input names a job id already used with a different request."""

    def __init__(self, job_id: str, line: int, other_line: int | None) -> None:
        self.job_id = job_id
        self.line = line
        self.other_line = other_line
        where = f"line {other_line} of this file" if other_line else "this run's queue"
        self.detail = f"custom_id {job_id!r} is already used in {where} with a different body"
        super().__init__(f"line {line}: {self.detail}")


class SchemaVersionError(Exception):
    """The database was written by a newer version of the engine."""


class WorkQueue(Protocol):
    async def enqueue(self, jobs: Iterable[NewJob]) -> int:
        """Add jobs in one transaction; return how many were new.

        Enqueueing the same jobs again adds nothing. Any exception raised while iterating
        `jobs` (bad input) or an `EnqueueConflict` rolls the whole call back.
        """
        ...

    async def claim(self, limit: int, now: float, lease_s: float) -> list[ClaimedJob]:
        """Atomically move up to `limit` due jobs to RUNNING with a lease, in enqueue order
        (a retry that falls due goes before jobs enqueued after it)."""
        ...

    async def commit(self, outcomes: Sequence[Outcome], meta: Mapping[str, str]) -> None:
        """Record outcomes and the given meta values in one transaction."""
        ...

    async def cached_results(self, fingerprints: Sequence[str]) -> dict[str, CachedResult]:
        """Completed results for these request fingerprints (empty without a cache)."""
        ...

    async def renew(self, seqs: Sequence[int], lease_until: float) -> None:
        """Extend the leases of jobs this process still holds."""
        ...

    async def sweep(self, now: float) -> int:
        """Return RUNNING jobs whose lease expired to QUEUED; return how many."""
        ...

    async def reset_running(self) -> int:
        """Return every RUNNING job to QUEUED (the caller owns the queue exclusively)."""
        ...

    async def has_running(self) -> bool: ...

    async def next_due(self) -> float | None:
        """The earliest next-run time among QUEUED jobs, or None when none is queued."""
        ...

    async def counts(self) -> QueueCounts: ...

    def iter_terminal(self, chunk: int = 2000) -> AsyncIterator[TerminalRow]:
        """Every DONE or FAILED job in enqueue order, streamed in chunks."""
        ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, values: Mapping[str, str]) -> None: ...

    async def close(self) -> None: ...
