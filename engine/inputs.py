"""Reading OpenAI Batch API request files into jobs, streamed, with errors that name the line."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import msgspec

from engine.errors import InputError
from schemas.batch import SUPPORTED_URLS, batch_input_decoder
from schemas.job import NewJob
from schemas.openai import ChatRequest

_canonical = msgspec.json.Encoder(order="sorted")
EXPECTED_OUTPUT_TOKENS = 256


def canonical_body(body: object) -> bytes:
    """The body as compact JSON with sorted keys: key order and whitespace do not matter."""
    return _canonical.encode(body)


def fingerprint(canonical: bytes) -> str:
    """The identity of a request: what the deduplication cache and conflict checks key on."""
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def read_batch_requests(path: Path) -> Iterator[NewJob]:
    """Yield one job per non-blank line of a Batch API input file; raise InputError on the
    first bad line (the caller's enqueue transaction then enqueues nothing)."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield _parse_line(path, number, raw)


def _parse_line(path: Path, number: int, raw: bytes) -> NewJob:
    try:
        item = batch_input_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InputError(path, number, f"not a valid request line: {exc}") from None
    except RecursionError:
        raise InputError(path, number, "not a valid request line: nested too deeply") from None
    if not item.custom_id:
        raise InputError(path, number, "custom_id is empty")
    if item.method.upper() != "POST":
        raise InputError(path, number, f"method {item.method!r} is not supported (use POST)")
    if item.url not in SUPPORTED_URLS:
        known = ", ".join(sorted(SUPPORTED_URLS))
        raise InputError(path, number, f"unknown url {item.url!r} (supported: {known})")
    try:
        request = msgspec.convert(item.body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise InputError(path, number, f"body is not a chat-completions request: {exc}") from None
    problem = request_problem(request)
    if problem:
        raise InputError(path, number, f"body is not a valid chat-completions request: {problem}")
    payload = canonical_body(item.body)
    return NewJob(
        id=item.custom_id,
        fingerprint=fingerprint(payload),
        payload=payload,
        line=number,
        model=request.model,
        est_tokens=estimate_tokens(request),
    )


def request_problem(request: ChatRequest) -> str:
    """What makes a decoded request one every API refuses (400), or "" when nothing does."""
    if not request.messages:
        return "'messages' must not be empty"
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = getattr(request, name)
        if value is not None and value < 1:
            return f"'{name}' must be >= 1, got {value}"
    return ""


def estimate_tokens(request: ChatRequest) -> int:
    """Offline token estimate for the limiter's reservation (settled with the real usage).

    About 4 characters per token plus 4 per message for the prompt; the output counts at its
    cap (as OpenAI counts `max_tokens` toward TPM), or `EXPECTED_OUTPUT_TOKENS` without one.
    """
    chars = sum(len(m.content or "") for m in request.messages)
    prompt = chars // 4 + 4 * len(request.messages) + 3
    output = request.max_completion_tokens or request.max_tokens or EXPECTED_OUTPUT_TOKENS
    return prompt + output * max(1, request.n or 1)
