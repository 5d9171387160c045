"""Error classification and response parsing, as tables: status → class, body → CallResult or
error, error → Retry or Failed. Pure functions, no I/O. (Retry-After's own formats are in
test_backoff.py; here: that parse_response puts them on the error.)"""

from __future__ import annotations

import json
import random

import pytest
from multidict import CIMultiDict

from schemas.job import ClaimedJob, Failed, Retry
from tests.fakes import completion
from workers.client import RateLimitHeaders, parse_ratelimit_headers, parse_response
from workers.errors import (
    CallTimeout,
    EmptyChoices,
    InvalidOutput,
    MalformedResponse,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
    ServerError,
    TransportError,
    error_for_status,
    is_outage_like,
)
from workers.executor import RetryPolicy, decide

# -- status → class ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls", "outage"),
    [
        (429, RateLimited, False),
        (408, ServerError, False),
        (409, ServerError, False),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (504, ServerError, True),
        (529, ServerError, True),
        (400, PermanentError, False),
        (401, PermanentError, False),
        (403, PermanentError, False),
        (404, PermanentError, False),
        (422, PermanentError, False),
        (418, PermanentError, False),  # any other 4xx
    ],
)
def test_error_for_status(status: int, cls: type[ProviderError], outage: bool) -> None:
    error = error_for_status(status, "the body", "req-1", None)
    assert type(error) is cls
    assert isinstance(error, RetryableError) is (cls is not PermanentError)
    assert (error.status_code, error.body, error.request_id) == (status, "the body", "req-1")
    assert is_outage_like(error) is outage


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (TransportError("connection reset"), True),
        (CallTimeout("timed out"), True),
        (MalformedResponse("truncated", status_code=200), False),
        (EmptyChoices("no choices", status_code=200), False),
        (InvalidOutput("no marker", status_code=200), False),
    ],
)
def test_failures_without_a_status(error: ProviderError, outage: bool) -> None:
    assert isinstance(error, RetryableError)
    assert is_outage_like(error) is outage


# -- parse_response: errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "retry_after_s"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the finer one wins
    ],
)
def test_429_carries_the_servers_retry_after(
    headers: dict[str, str], retry_after_s: float | None
) -> None:
    with pytest.raises(RateLimited) as info:
        parse_response(429, {**headers, "x-request-id": "req-429"}, b'{"error":{}}', 3.0)
    assert info.value.retry_after_s == retry_after_s
    assert info.value.status_code == 429
    assert info.value.request_id == "req-429"
    assert info.value.body == '{"error":{}}'


def test_a_503_with_retry_after_is_a_server_error_that_says_when() -> None:
    with pytest.raises(ServerError) as info:
        parse_response(503, {"retry-after": "4"}, b"busy", 1.0)
    assert (info.value.status_code, info.value.retry_after_s) == (503, 4.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_refusals_are_permanent_with_the_body_kept(status: int) -> None:
    body = b'{"error": {"message": "invalid model", "type": "invalid_request_error"}}'
    with pytest.raises(PermanentError) as info:
        parse_response(status, {}, body, 1.0)
    assert info.value.status_code == status
    assert info.value.body == body.decode()


def test_a_long_error_body_is_cut_to_an_excerpt() -> None:
    with pytest.raises(ServerError) as info:
        parse_response(500, {}, b"x" * 10_000, 1.0)
    assert info.value.body == "x" * 2000


# -- parse_response: a 200 that is not a usable completion ---------------------------------

GOOD = completion("hello", prompt_tokens=12, completion_tokens=34)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>Bad Gateway</html>", id="html"),
        pytest.param(b"", id="empty"),
        pytest.param(GOOD[: len(GOOD) // 2], id="truncated"),
        pytest.param(b'{"object": "chat.completion"}', id="no-choices-field"),
        pytest.param(b'{"id": "x", "choices": "none"}', id="wrong-type"),
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b"\xff\xfe\x00", id="binary"),
    ],
)
def test_a_200_that_is_not_a_chat_completion_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponse) as info:
        parse_response(200, {"x-request-id": "req-m"}, body, 1.0)
    assert type(info.value) is MalformedResponse
    assert info.value.status_code == 200
    assert info.value.request_id == "req-m"
    assert info.value.body == body.decode("utf-8", "replace")


def test_a_completion_without_choices_is_empty_choices() -> None:
    with pytest.raises(EmptyChoices) as info:
        parse_response(200, {}, b'{"id": "cmpl-1", "choices": []}', 1.0)
    assert info.value.status_code == 200


# -- parse_response: a good completion ------------------------------------------------------


def test_a_good_completion_is_kept_byte_for_byte_with_its_usage() -> None:
    result = parse_response(200, {"x-request-id": "req-ok"}, GOOD, 42.0)
    assert result.body == GOOD  # one line already: not re-encoded
    assert (result.status_code, result.request_id, result.latency_ms) == (200, "req-ok", 42.0)
    assert (result.prompt_tokens, result.completion_tokens) == (12, 34)
    assert result.ratelimit is None


def test_without_a_request_id_header_the_completion_id_is_used() -> None:
    body = b'{"id": "cmpl-77", "choices": [{"index": 0, "message": {"role": "assistant"}}]}'
    result = parse_response(200, {}, body, 1.0)
    assert result.request_id == "cmpl-77"
    assert (result.prompt_tokens, result.completion_tokens) == (0, 0)  # no usage given


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_multi_line_body_is_re_encoded_to_one_line(newline: str) -> None:
    document = json.loads(GOOD)
    document["choices"][0]["message"]["content"] = "two\nlines"  # escaped inside the string
    pretty = json.dumps(document, indent=2).replace("\n", newline).encode()
    result = parse_response(200, {}, pretty, 1.0)
    assert b"\n" not in result.body
    assert b"\r" not in result.body
    assert json.loads(result.body) == document


# -- x-ratelimit headers -------------------------------------------------------------------

OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29000",
    "x-ratelimit-reset-tokens": "6m0s",
}


def test_ratelimit_headers_are_parsed() -> None:
    assert parse_ratelimit_headers(OPENAI_HEADERS) == RateLimitHeaders(
        limit_requests=500.0,
        remaining_requests=499.0,
        reset_requests_s=0.12,
        limit_tokens=30000.0,
        remaining_tokens=29000.0,
        reset_tokens_s=360.0,
    )


def test_ratelimit_headers_as_aiohttp_gives_them_on_a_completion() -> None:
    """Mixed-case names in a case-insensitive mapping (the aiohttp transport's headers)."""
    headers = CIMultiDict(
        {"X-Request-Id": "req-h", **{k.title(): v for k, v in OPENAI_HEADERS.items()}}
    )
    result = parse_response(200, headers, GOOD, 1.0)
    assert result.request_id == "req-h"
    assert result.ratelimit is not None
    assert (result.ratelimit.limit_requests, result.ratelimit.reset_tokens_s) == (500.0, 360.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-ratelimit-remaining-requests": "3"}, None),  # no limit named: nothing to learn
        (
            {"x-ratelimit-limit-tokens": "1000", "x-ratelimit-reset-tokens": "1s"},
            RateLimitHeaders(limit_tokens=1000.0, reset_tokens_s=1.0),
        ),
        (  # a value that is not a number or a duration is dropped, the others kept
            {
                "x-ratelimit-limit-requests": "many",
                "x-ratelimit-remaining-requests": "7",
                "x-ratelimit-reset-requests": "soon",
            },
            RateLimitHeaders(remaining_requests=7.0),
        ),
    ],
)
def test_partial_or_bad_ratelimit_headers(
    headers: dict[str, str], expected: RateLimitHeaders | None
) -> None:
    assert parse_ratelimit_headers(headers) == expected


# -- decide: Retry or Failed ---------------------------------------------------------------

POLICY = RetryPolicy(max_attempts=3, base_s=1.0, max_s=60.0, jitter=0.0)
NOW = 1000.0


def job(attempts: int, first_started_at: float | None = None) -> ClaimedJob:
    return ClaimedJob(7, "job-7", "request", attempts, "fp", b"{}", first_started_at)


RETRYABLE = [
    ServerError("HTTP 503", status_code=503),
    ServerError("HTTP 408", status_code=408),
    RateLimited("HTTP 429", retry_after_s=None),
    TransportError("connection refused"),
    CallTimeout("timed out"),
    MalformedResponse("truncated", status_code=200),
    EmptyChoices("no choices", status_code=200),
    InvalidOutput("no marker", status_code=200),
]


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(("attempts", "delay_s"), [(0, 1.0), (1, 2.0)])
def test_a_retryable_error_is_retried_while_attempts_remain(
    error: ProviderError, attempts: int, delay_s: float
) -> None:
    outcome = decide(job(attempts), error, NOW - 1, NOW, POLICY, random.Random(0))
    assert isinstance(outcome, Retry)
    assert outcome.spend_attempt
    assert outcome.next_run_at == NOW + delay_s  # base_s * 2 ** (attempt - 1), no jitter
    assert outcome.error.kind == type(error).__name__
    assert outcome.started_at == NOW - 1


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
def test_a_retryable_error_fails_on_the_last_attempt(error: ProviderError) -> None:
    outcome = decide(job(2, first_started_at=900.0), error, NOW - 1, NOW, POLICY, random.Random(0))
    assert isinstance(outcome, Failed)
    assert outcome.attempts == 3
    assert outcome.error.kind == type(error).__name__
    assert (outcome.first_started_at, outcome.started_at, outcome.finished_at) == (
        900.0,
        NOW - 1,
        NOW,
    )


def test_a_retry_after_longer_than_the_backoff_is_honoured() -> None:
    error = RateLimited("HTTP 429", retry_after_s=30.0)
    outcome = decide(job(0), error, NOW, NOW, POLICY, random.Random(0))
    assert isinstance(outcome, Retry)
    assert outcome.next_run_at == NOW + 30.0


def test_backoff_is_capped_by_max_s() -> None:
    policy = RetryPolicy(max_attempts=50, base_s=1.0, max_s=8.0, jitter=0.0)
    error = ServerError("HTTP 500", status_code=500)
    outcome = decide(job(20), error, NOW, NOW, policy, random.Random(0))
    assert isinstance(outcome, Retry)
    assert outcome.next_run_at == NOW + 8.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_permanent_error_fails_at_once_with_the_reason_kept(status: int) -> None:
    error = error_for_status(status, '{"error": "no"}', "req-p", None)
    outcome = decide(job(0), error, NOW - 2, NOW, POLICY, random.Random(0))
    assert isinstance(outcome, Failed)
    assert (outcome.job_id, outcome.attempts, outcome.request_id) == ("job-7", 1, "req-p")
    assert outcome.error.kind == "PermanentError"
    assert (outcome.error.status_code, outcome.error.body) == (status, '{"error": "no"}')
    assert outcome.error.message == f"HTTP {status}"
    assert outcome.first_started_at == NOW - 2  # its first attempt was this one
