"""Property tests: arbitrary bytes into the request-file parser and the response parser give a
classified error (an InputError naming the line; a RetryableError or PermanentError), never a
crash and never a success that is not one."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.inputs import read_batch_requests
from schemas.openai import ChatRequest, chat_response_decoder
from workers.client import CallResult, parse_response
from workers.errors import PermanentError, ProviderError, RetryableError

# no example database (tests write nothing into the working directory), same examples each run
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


small_values: st.SearchStrategy[Any] = json_values | st.integers(-2, 2) | st.just([])
literals = st.sampled_from(
    [b"1e400", b"-1e400", b"123456789012345678901234567890", b"[" * 3000 + b"]" * 3000]
)


def _valid_line(i: int) -> dict[str, Any]:
    return {
        "custom_id": f"r{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
    }


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    """Lines that are valid, or valid with one field replaced, or JSON of any shape, or bytes."""
    lines: list[bytes] = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["valid", "mutated", "json", "bytes", "literal"]))
        if kind == "bytes":
            lines.append(draw(st.binary(max_size=60)).replace(b"\n", b" "))
            continue
        if kind == "literal":  # what json.dumps never writes: huge numbers, deep nesting
            value = draw(literals)
            line_bytes = json.dumps(_valid_line(i)).encode()
            lines.append(line_bytes.replace(b'"model": "m"', b'"model": "m", "x": ' + value))
            continue
        line: Any = _valid_line(i)
        if kind == "mutated":
            target = line if draw(st.booleans()) else line["body"]
            keys = [*sorted(target), "extra", "max_tokens", "max_completion_tokens", "n"]
            target[draw(st.sampled_from(keys))] = draw(small_values)
        elif kind == "json":
            line = draw(json_values)
        lines.append(json.dumps(line).encode())
    return b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


def _read(data: bytes) -> tuple[Path, list[Any] | InputError]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.jsonl"
        path.write_bytes(data)
        try:
            return path, list(read_batch_requests(path))
        except InputError as error:
            return path, error


def _check_read(data: bytes) -> None:
    path, outcome = _read(data)
    if isinstance(outcome, InputError):
        assert outcome.line is not None  # a readable file: the error names its line
        assert 1 <= outcome.line <= data.count(b"\n") + 1
        assert f"{path}:{outcome.line}: " in str(outcome)
        return
    lines = [raw for raw in data.split(b"\n") if raw.strip()]
    assert len(outcome) == len(lines)  # every line became a job, no line was dropped
    for job, raw in zip(outcome, lines, strict=True):
        item = json.loads(raw)  # a success is a line that really is a request
        assert job.id == item["custom_id"] != ""
        assert msgspec.json.decode(job.payload) == item["body"]  # the body, unchanged
        request = msgspec.json.decode(job.payload, type=ChatRequest)
        assert request.model == job.model
        assert request.messages  # what every API refuses is refused here
        assert job.est_tokens > 0  # the limiter reserves a real amount


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_jobs_or_an_error_naming_the_line(data: bytes) -> None:
    _check_read(data)


DEEP = b"[" * 3000 + b"]" * 3000
LINE = b'{"custom_id": "a", "body": {"model": "m", "messages": %s%s}}'
USER = b'[{"role": "user", "content": "q"}]'


@SETTINGS
@given(request_lines())
@example(LINE % (USER, b', "x": ' + DEEP))  # found: RecursionError escaped
@example(LINE % (b"[]", b""))  # found: accepted, then refused by every API
@example(LINE % (USER, b', "max_tokens": 0'))  # found: a negative token estimate
@example(LINE % (USER, b', "n": -1'))
def test_near_valid_request_files_are_jobs_or_an_error_naming_the_line(data: bytes) -> None:
    _check_read(data)


HEADER_NAMES = [
    "retry-after",
    "retry-after-ms",
    "x-request-id",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-reset-tokens",
    "content-type",
]
headers = st.dictionaries(
    st.sampled_from(
        [
            "retry-after",
            "retry-after-ms",
            "x-request-id",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-reset-tokens",
            "content-type",
        ]
    ),
    st.text(max_size=30) | st.sampled_from(["nan", "inf", "-1", "1e400", "1s", "6m0s", "0.5"]),
    max_size=5,
)


@st.composite
def response_bodies(draw: st.DrawFn) -> bytes:
    """Bytes, JSON of any shape, or a completion with one part replaced."""
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "literal"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    message = {"role": "assistant", "content": "hi"}
    body: dict[str, Any] = {
        "id": "c1",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    target = draw(st.sampled_from([body, body["choices"][0], message, body["usage"]]))
    key = draw(st.sampled_from([*sorted(target), "extra"]))
    target[key] = "LITERAL" if kind == "literal" else draw(json_values)
    text = json.dumps(body, indent=draw(st.sampled_from([None, 2]))).encode()
    text = text.replace(b'"LITERAL"', draw(literals))
    return text[: draw(st.integers(0, len(text) + 1))]  # maybe truncated


def _parse(status: int, head: dict[str, str], body: bytes) -> CallResult | ProviderError:
    try:
        return parse_response(status, head, body, 1.0)
    except ProviderError as error:
        return error


def _check_response(status: int, head: dict[str, str], body: bytes) -> None:
    outcome = _parse(status, head, body)
    if isinstance(outcome, ProviderError):
        assert isinstance(outcome, RetryableError | PermanentError)
        retryable = 200 <= status < 300 or status >= 500 or status in {408, 409, 429}
        assert isinstance(outcome, RetryableError) == retryable  # a 2xx: a malformed body
        retry_after = outcome.retry_after_s if isinstance(outcome, RetryableError) else None
        assert retry_after is None or retry_after >= 0.0
        return
    assert 200 <= status < 300  # only a 2xx with a real completion is a success
    completion = chat_response_decoder.decode(outcome.body)
    assert completion.choices
    assert b"\n" not in outcome.body  # one output line
    assert outcome.prompt_tokens >= 0
    assert outcome.completion_tokens >= 0


@SETTINGS
@given(st.integers(100, 599), headers, response_bodies())
def test_any_answer_is_a_completion_or_a_classified_error(
    status: int, head: dict[str, str], body: bytes
) -> None:
    _check_response(status, head, body)


COMPLETION = b'{"id": "c", "choices": [{"index": 0, "message": {"role": "a"}}]%s}\n'


@SETTINGS
@given(headers, response_bodies())
@example({}, COMPLETION % (b', "x": ' + DEEP))  # found: RecursionError escaped
@example({}, COMPLETION % b', "x": 1e400')  # found: DecodeError escaped on re-encoding
@example({}, COMPLETION % b', "usage": {"prompt_tokens": -5}')  # found: negative usage kept
def test_any_200_is_a_completion_or_a_classified_error(head: dict[str, str], body: bytes) -> None:
    _check_response(200, head, body)
