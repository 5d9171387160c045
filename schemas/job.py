"""Jobs as the queue stores them, and the outcomes workers report back.

A job's life:  (WAITING ──parent done──►) QUEUED ──claim──► RUNNING ──Done──► DONE
                  ▲                 │ ├──Failed──► FAILED
                  └──Retry/Release──┘ └──(crash: reset on the next start, or the sweeper
                                         returns an expired lease)
"""

from __future__ import annotations

import enum

import msgspec


class Status(enum.StrEnum):
    WAITING = "waiting"  # for its parent's result (the PERSONA graph)
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


TERMINAL = frozenset({Status.DONE, Status.FAILED})
ALL_STATUSES = tuple(Status)


class NewJob(msgspec.Struct, frozen=True, gc=False):
    """A job about to be enqueued. `id` is deterministic (the custom_id of a request file)."""

    id: str
    fingerprint: str
    payload: bytes
    stage: str = "request"
    line: int = 0  # where it came from, for error messages
    model: str = ""
    est_tokens: int = 0  # offline estimate (prompt + expected output) the limiter reserves
    parent_id: str | None = None  # WAITING until this job is done


class ClaimedJob(msgspec.Struct, frozen=True, gc=False):
    seq: int
    id: str
    stage: str
    attempts: int  # attempts made before this one
    fingerprint: str
    payload: bytes
    first_started_at: float | None = None  # when its first attempt began
    model: str = ""
    est_tokens: int = 0


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """Why a call failed. `kind` is the error class name, never parsed text."""

    kind: str
    message: str
    status_code: int | None = None
    body: str | None = None


class CachedResult(msgspec.Struct, frozen=True, gc=False):
    body: bytes
    prompt_tokens: int
    completion_tokens: int


class Done(msgspec.Struct, frozen=True, gc=False):
    seq: int
    job_id: str
    fingerprint: str
    attempts: int  # including this one
    body: bytes
    status_code: int
    request_id: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    started_at: float  # this attempt
    finished_at: float
    first_started_at: float  # the job's first attempt
    cached: bool = False  # served from the cache or by an identical call in flight
    model: str = ""


class Retry(msgspec.Struct, frozen=True, gc=False):
    seq: int
    error: ErrorInfo
    next_run_at: float
    started_at: float
    spend_attempt: bool = True


class Failed(msgspec.Struct, frozen=True, gc=False):
    seq: int
    job_id: str
    attempts: int  # including this one
    error: ErrorInfo
    started_at: float
    finished_at: float
    first_started_at: float
    request_id: str = ""


class Released(msgspec.Struct, frozen=True, gc=False):
    """Claimed but never called (a stop came first): back to the queue, no attempt spent."""

    seq: int


Outcome = Done | Retry | Failed | Released


class TerminalRow(msgspec.Struct, frozen=True, gc=False):
    """A finished job as export needs it."""

    seq: int
    id: str
    status: Status
    attempts: int
    result: bytes | None
    error: bytes | None
    status_code: int | None
    request_id: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float | None
    first_started_at: float | None = None
    finished_at: float | None = None
    cached: bool = False
    model: str = ""


class ModelUsage(msgspec.Struct, gc=False):
    """Finished calls of one model: what was used, and what of it was paid (not cached)."""

    done: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    paid_prompt_tokens: int = 0
    paid_completion_tokens: int = 0


class QueueCounts(msgspec.Struct, gc=False):
    by_status: dict[str, int]
    by_stage: dict[str, dict[str, int]]
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    first_started_at: float | None
    last_finished_at: float | None
    next_run_at: float | None
    by_model: dict[str, ModelUsage] = msgspec.field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def count(self, status: Status) -> int:
        return self.by_status.get(status.value, 0)
