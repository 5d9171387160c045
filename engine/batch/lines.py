"""Jobs to Batch API input lines, and a finished batch's output and error lines back to
outcomes (pure: no I/O, an injected clock value and random source).

Every member of the batch gets exactly one outcome:
    a 200 line          Done (the pipeline's check may turn it into a retry)
    a non-200 line      the usual classification: 5xx/429/408/409 retried, other 4xx fail
    a line not run      (expired, cancelled, missing) back to the queue, no attempt spent
    a failed batch      lines its errors name fail as 400s; the rest: retried with an attempt
                        spent when the errors name no line (so a batch the provider keeps
                        refusing ends), else back to the queue unspent
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import msgspec

from schemas.job import ClaimedJob, ErrorInfo, Outcome, Retry
from workers.client import CallResult, parse_response
from workers.errors import (
    PermanentError,
    ProviderError,
    ServerError,
    error_for_status,
)
from workers.executor import RetryPolicy, decide, done

_encoder = msgspec.json.Encoder()
_HEAD = b'{"custom_id":'
_MIDDLE = b',"method":"POST","url":"/v1/chat/completions","body":'


def input_line(custom_id: str, payload: bytes) -> bytes:
    """One input line (with its newline); the payload goes in as the bytes the online call
    would send, so both modes ask the same request."""
    return _HEAD + _encoder.encode(custom_id) + _MIDDLE + payload + b"}\n"


class _Response(msgspec.Struct, gc=False):
    status_code: int
    body: msgspec.Raw = msgspec.Raw(b"null")
    request_id: str = ""


class _LineError(msgspec.Struct, gc=False):
    code: str | None = None
    message: str | None = None


class _OutputLine(msgspec.Struct, gc=False):
    custom_id: str
    response: _Response | None = None
    error: _LineError | None = None


_line_decoder = msgspec.json.Decoder(_OutputLine)

Check = Callable[[ClaimedJob, CallResult], None]


class BatchEnd(msgspec.Struct, frozen=True):
    """How a batch ended, as its outcomes need it."""

    status: str  # completed, expired, cancelled, failed
    started_at: float  # when it was submitted
    now: float
    failed_lines: dict[int, str] = {}  # a failed batch: 1-based input line -> the error


def outcomes_of(
    members: Sequence[tuple[ClaimedJob, str]],
    output: bytes,
    errors: bytes,
    end: BatchEnd,
    policy: RetryPolicy,
    rng: random.Random,
    check: Check,
) -> list[Outcome]:
    """One outcome per member (in member order)."""
    jobs = {custom_id: job for job, custom_id in members}
    found: dict[int, Outcome] = {}
    latency_ms = max(0.0, (end.now - end.started_at) * 1000.0)
    for raw in (*output.splitlines(), *errors.splitlines()):
        if not raw.strip():
            continue
        try:
            line = _line_decoder.decode(raw)
        except msgspec.DecodeError:
            continue  # a torn or foreign line: its job counts as not run
        job = jobs.get(line.custom_id)
        if job is None or job.seq in found:
            continue
        outcome = _outcome(job, line, end, latency_ms, policy, rng, check)
        if outcome is not None:
            found[job.seq] = outcome
    whole_batch_refused = end.status == "failed" and not end.failed_lines
    result: list[Outcome] = []
    for number, (job, _) in enumerate(members, start=1):
        outcome = found.get(job.seq)
        if outcome is None and number in end.failed_lines:
            error = PermanentError(end.failed_lines[number], status_code=400)
            outcome = decide(job, error, end.started_at, end.now, policy, rng)
        elif outcome is None and whole_batch_refused:
            refused = ServerError("the batch failed validation", status_code=500)
            outcome = decide(job, refused, end.started_at, end.now, policy, rng)
        elif outcome is None:
            outcome = not_run(job, end)
        result.append(outcome)
    return result


def not_run(job: ClaimedJob, end: BatchEnd) -> Retry:
    """Back to the queue at once, no attempt spent: the provider never ran it."""
    info = ErrorInfo("BatchNotRun", f"the batch ended {end.status} before running it")
    return Retry(job.seq, info, next_run_at=end.now, started_at=end.started_at, spend_attempt=False)


def _outcome(
    job: ClaimedJob,
    line: _OutputLine,
    end: BatchEnd,
    latency_ms: float,
    policy: RetryPolicy,
    rng: random.Random,
    check: Check,
) -> Outcome | None:
    response = line.response
    if response is None:
        return None  # batch_expired / batch_cancelled and the like: not run
    body = bytes(response.body)
    try:
        headers = {"x-request-id": response.request_id}
        if response.status_code != 200:
            text = body[:2000].decode("utf-8", "replace")
            raise error_for_status(response.status_code, text, response.request_id, None)
        result = parse_response(200, headers, body, latency_ms)
        check(job, result)
    except ProviderError as error:
        return decide(job, error, end.started_at, end.now, policy, rng)
    return done(job, result, end.started_at, end.now)
