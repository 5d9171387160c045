"""engine.batch.lines: one outcome per member of a finished batch, by the usual classification."""

from __future__ import annotations

import json
import random

import pytest

from engine.batch.lines import BatchEnd, Check, input_line, outcomes_of
from schemas.job import ClaimedJob, Done, Failed, Outcome, Retry
from workers.client import CallResult
from workers.errors import InvalidOutput
from workers.executor import RetryPolicy

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def _job(i: int, attempts: int = 0) -> tuple[ClaimedJob, str]:
    return ClaimedJob(i, f"j{i}", "request", attempts, f"fp{i}", b"", None, "m", 10), f"j{i}"


def _line(custom_id: str, status: int | None, body: object = None, code: str = "") -> bytes:
    response = None if status is None else {"status_code": status, "request_id": "r", "body": body}
    error = {"code": code, "message": "x"} if code else None
    return json.dumps(
        {"id": "b", "custom_id": custom_id, "response": response, "error": error}
    ).encode()


def _no_check(job: ClaimedJob, result: CallResult) -> None:
    return None


def _outcomes(
    members: list[tuple[ClaimedJob, str]],
    output: bytes,
    errors: bytes,
    end: BatchEnd,
    check: Check = _no_check,
) -> list[Outcome]:
    return outcomes_of(members, output, errors, end, RetryPolicy(), random.Random(0), check)


def test_input_line_carries_the_payload_bytes_unchanged() -> None:
    payload = b'{"messages":[],"model":"m"}'
    line = input_line('a"b', payload)
    assert line.endswith(b"\n")
    decoded = json.loads(line)
    assert decoded["custom_id"] == 'a"b'
    assert payload in line
    assert decoded["url"] == "/v1/chat/completions"


def test_each_line_is_classified() -> None:
    members = [_job(i) for i in range(6)]
    output = _line("j0", 200, COMPLETION)
    errors = b"\n".join(
        [
            _line("j1", 500, {"error": {"message": "boom"}}),
            _line("j2", 400, {"error": {"message": "bad"}}),
            _line("j3", None, code="batch_expired"),
            _line("unknown", 200, COMPLETION),  # not a member: ignored
        ]
    )
    end = BatchEnd("expired", 10.0, 20.0)
    done, server, bad, expired, missing, other = _outcomes(members, output, errors, end)
    assert isinstance(done, Done)
    assert (done.prompt_tokens, done.completion_tokens, done.latency_ms) == (3, 2, 10_000.0)
    assert isinstance(server, Retry)
    assert server.spend_attempt
    assert isinstance(bad, Failed)
    assert bad.error.status_code == 400
    for not_run in (expired, missing, other):
        assert isinstance(not_run, Retry)
        assert not not_run.spend_attempt
        assert not_run.next_run_at == 20.0


def test_a_failed_check_is_retried() -> None:
    def check(job: ClaimedJob, result: CallResult) -> None:
        raise InvalidOutput("wrong format")

    [outcome] = _outcomes(
        [_job(0)], _line("j0", 200, COMPLETION), b"", BatchEnd("completed", 0, 1), check
    )
    assert isinstance(outcome, Retry)
    assert outcome.error.kind == "InvalidOutput"


@pytest.mark.parametrize("failed_lines", [{}, {2: "invalid_json: bad line"}])
def test_a_batch_that_failed_validation(failed_lines: dict[int, str]) -> None:
    members = [_job(0), _job(1, attempts=4)]
    first, second = _outcomes(members, b"", b"", BatchEnd("failed", 0, 1, failed_lines))
    if failed_lines:  # the named line fails for good; the other was never run
        assert isinstance(second, Failed)
        assert isinstance(first, Retry)
        assert not first.spend_attempt
    else:  # nothing named: retried with an attempt spent, so a batch refused forever ends
        assert isinstance(first, Retry)
        assert first.spend_attempt
        assert isinstance(second, Failed)  # its fifth attempt: out of attempts
