"""The storage interface of the work queue, and the rules every backend keeps.

The coordinator, the output files, the reports and the pipelines talk to `WorkQueue` only;
only the backends (`engine.queue.sqlite`, `engine.queue.memory`) know how jobs are stored. One
contract test suite (tests/contract/test_queue.py) runs against every backend.

What a backend keeps:
    jobs      id, stage, model, status, attempts, next run, lease, request, result, error
    children  a job enqueued with `parent_id` WAITS; the commit that marks its parent DONE
              makes it QUEUED (in the same transaction)
    records   a pipeline's own data (personas, prompts, pair index…): (kind, key) → bytes,
              written with the jobs that need them, read back in insertion order
    meta      small key → text values (signatures, output sizes), committed with outcomes
    cache     with a `CacheSpec`: finished responses by (endpoint scope, request fingerprint),
              shared by every run that names the same cache
    batches   Batch API bookkeeping (engine.batch, schemas.batches): each batch's row and its
              member jobs; a member stays RUNNING and is never swept or reset (its batch may
              still deliver) until `batch_settle` commits its outcomes and frees it

Times are wall-clock seconds (time.time()): they are persisted and must mean the same thing
after a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from engine.errors import SettingsError
from schemas.batches import BatchMember, BatchRow
from schemas.job import (
    CachedResult,
    ClaimedJob,
    ErrorInfo,
    NewJob,
    Outcome,
    QueueCounts,
    TerminalRow,
)


class EnqueueConflict(Exception):
    """An input names a job id already used with a different request."""

    def __init__(self, job_id: str, line: int, other_line: int | None) -> None:
        self.job_id = job_id
        self.line = line
        self.other_line = other_line
        where = f"line {other_line} of this file" if other_line else "this run's queue"
        self.detail = f"custom_id {job_id!r} is already used in {where} with a different body"
        super().__init__(f"line {line}: {self.detail}")


class SchemaVersionError(SettingsError):
    """The database was written by a newer version of the engine."""


class CacheSpec(msgspec.Struct, frozen=True):
    """Where the shared response cache lives, and whose answers this run may use.

    `scope` is the endpoint's identity (`engine.endpoint.cache_scope`): an answer stored under
    one scope is never served under another, so one server's text never stands in for
    another's.
    """

    path: Path
    scope: str


#: A pipeline record: (key, value). Keys are unique within a kind.
Record = tuple[str, bytes]

_error_decoder = msgspec.json.Decoder(ErrorInfo)
_any_decoder = msgspec.json.Decoder()


def failure_codes(error: bytes | None) -> frozenset[str]:
    """The names a failed job's error answers to in `requeue_failed(codes)`: its HTTP status
    ("400"), the engine's error class ("PermanentError", "ContentRefused"), the provider's
    `error.code` and `error.type` ("invalid_api_key", "invalid_request_error"), and for a
    refused reply its finish reason ("content_filter") or "refusal". Pure, so every
    backend filters alike (in SQL only where it can say the same)."""
    if not error:
        return frozenset()
    try:
        info = _error_decoder.decode(error)
    except msgspec.DecodeError:
        return frozenset()
    codes = {info.kind}
    if info.status_code is not None:
        codes.add(str(info.status_code))
    try:
        body = _any_decoder.decode(info.body) if info.body else None
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict):
        codes.update(_body_codes(body))
    return frozenset(codes)


def _body_codes(body: dict[str, object]) -> set[str]:
    """The provider's error code and type, or a refused reply's finish reasons."""
    codes: set[str] = set()
    detail = body.get("error")
    if isinstance(detail, dict):
        codes.update(str(detail[k]) for k in ("code", "type") if detail.get(k))
    choices = body.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            if choice.get("finish_reason"):
                codes.add(str(choice["finish_reason"]))
            message = choice.get("message")
            if isinstance(message, dict) and message.get("refusal"):
                codes.add("refusal")
    return codes


class WorkQueue(Protocol):
    async def enqueue(
        self,
        jobs: Iterable[NewJob],
        records: Mapping[str, Iterable[Record]] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> int:
        """Add jobs (and the records and meta values given) in one transaction; return how
        many jobs were new.

        Enqueueing the same jobs again adds nothing. Any exception raised while iterating
        `jobs` or `records` (bad input) or an `EnqueueConflict` rolls the whole call back.
        """
        ...

    async def claim(self, limit: int, now: float, lease_s: float) -> list[ClaimedJob]:
        """Atomically move up to `limit` due jobs to RUNNING with a lease, in enqueue order
        (a retry that falls due goes before jobs enqueued after it)."""
        ...

    async def commit(self, outcomes: Sequence[Outcome], meta: Mapping[str, str]) -> None:
        """Record outcomes and the given meta values in one transaction; a DONE job's
        waiting children become QUEUED; fresh results go to the cache."""
        ...

    async def cached_results(self, fingerprints: Sequence[str]) -> dict[str, CachedResult]:
        """Completed results for these request fingerprints in this run's cache scope
        (empty without a cache)."""
        ...

    async def done_rows(self, job_ids: Sequence[str]) -> dict[str, TerminalRow]:
        """The finished rows of those of `job_ids` that are DONE (the others are absent)."""
        ...

    def iter_records(self, kind: str, chunk: int = 2000) -> AsyncIterator[Record]:
        """A pipeline's records of one kind, in the order they were written."""
        ...

    async def renew(self, seqs: Sequence[int], lease_until: float) -> None:
        """Extend the leases of jobs this process still holds."""
        ...

    async def sweep(self, now: float) -> int:
        """Return RUNNING jobs whose lease expired to QUEUED (members of an open batch
        excepted); return how many."""
        ...

    async def reset_running(self) -> int:
        """Return every RUNNING job to QUEUED (the caller owns the queue exclusively), except
        members of an open batch."""
        ...

    async def requeue_failed(self, codes: Collection[str] = ()) -> int:
        """Put FAILED jobs back to QUEUED with fresh attempts (0, due now, no lease, no
        finish time), in one transaction; return how many. With `codes`, only the jobs one of
        whose `failure_codes` is among them. Their WAITING children stay waiting: they are
        released when the parent is DONE, as on a first run."""
        ...

    async def has_running(self) -> bool: ...

    async def next_due(self) -> float | None:
        """The earliest next-run time among QUEUED jobs, or None when none is queued."""
        ...

    async def counts(self) -> QueueCounts: ...

    def iter_terminal(
        self, chunk: int = 2000, *, failed_only: bool = False
    ) -> AsyncIterator[TerminalRow]:
        """Every DONE or FAILED job (`failed_only`: every FAILED job) in enqueue order,
        streamed in chunks."""
        ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, values: Mapping[str, str]) -> None: ...

    # -- Batch API bookkeeping (engine.batch) ----------------------------------------------

    async def batch_open(self, batch: BatchRow, members: Sequence[BatchMember]) -> None:
        """Record a new batch and its members (RUNNING jobs the caller claimed) in one
        transaction, before anything is sent."""
        ...

    async def batch_update(self, batch: BatchRow) -> None:
        """Store a batch's row as given (a new state, file or batch id, provider status)."""
        ...

    async def batches(self, include_closed: bool = False) -> list[BatchRow]:
        """The batches not yet closed (or all of them), in the order they were opened."""
        ...

    async def batch_members(self, key: str) -> list[tuple[ClaimedJob, str]]:
        """The jobs of an open batch in line order, each with its line's custom_id (the
        ClaimedJob's payload is empty: the request went out in the batch's input file)."""
        ...

    async def batch_settle(
        self, batch: BatchRow, outcomes: Sequence[Outcome], meta: Mapping[str, str]
    ) -> None:
        """In one transaction: `commit(outcomes, meta)`, store `batch` (CLOSED) and free its
        members. A crash before it leaves the batch open, to be collected again."""
        ...

    async def close(self) -> None: ...
