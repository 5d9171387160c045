"""One job, one HTTP call: the provider transports.

The default transport is `Http1Transport` (workers/http1.py); `AiohttpTransport` here (one
shared session, pool sized to the concurrency, msgspec on both sides) and `SdkTransport`
(workers/sdk_client.py, through the openai SDK) are the others. Each turns every answer into a
`CallResult` (`parse_response`, shared by all) or raises a `workers.errors.ProviderError`
subclass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

import msgspec

from ratelimits.backoff import parse_retry_after
from ratelimits.limiter import ResetFormatError, parse_reset
from schemas.openai import Choice, any_decoder, chat_response_decoder, json_encoder
from workers.errors import (
    CallTimeout,
    ContentRefused,
    EmptyChoices,
    MalformedResponse,
    TransportError,
    error_for_status,
)

STAGE_HEADER = "X-Engine-Stage"
_BODY_EXCERPT = 2000


class RateLimitHeaders(msgspec.Struct, frozen=True, gc=False):
    """The provider's `x-ratelimit-*` view of our budget (None where it does not say)."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests_s: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens_s: float | None = None


class CallResult(msgspec.Struct, frozen=True, gc=False):
    status_code: int
    body: bytes  # the completion JSON, compact (one line)
    request_id: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ratelimit: RateLimitHeaders | None = None


def parse_ratelimit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """Read `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; None when absent."""
    if headers.get("x-ratelimit-limit-requests") is None and (
        headers.get("x-ratelimit-limit-tokens") is None
    ):
        return None
    values: dict[str, float | None] = {}
    for kind in ("requests", "tokens"):
        values[f"limit_{kind}"] = _number(headers.get(f"x-ratelimit-limit-{kind}"))
        values[f"remaining_{kind}"] = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
        values[f"reset_{kind}_s"] = _reset(headers.get(f"x-ratelimit-reset-{kind}"))
    return RateLimitHeaders(**values)


def _number(raw: str | None) -> float | None:
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


def _reset(raw: str | None) -> float | None:
    try:
        return None if raw is None else parse_reset(raw)
    except ResetFormatError:
        return None


class ChatTransport(Protocol):
    async def call(self, payload: bytes, stage: str) -> CallResult:
        """POST one chat-completions body; return the completion or raise ProviderError."""
        ...

    async def close(self) -> None: ...


def parse_response(
    status: int, headers: Mapping[str, str], body: bytes, latency_ms: float
) -> CallResult:
    """Turn an HTTP answer into a CallResult or the right ProviderError (pure)."""
    request_id = headers.get("x-request-id", "")
    if not 200 <= status < 300:
        text = body[:_BODY_EXCERPT].decode("utf-8", "replace")
        raise error_for_status(status, text, request_id, parse_retry_after(headers))
    try:
        completion = chat_response_decoder.decode(body)
        if b"\n" in body or b"\r" in body:
            body = json_encoder.encode(any_decoder.decode(body))  # output lines: one line each
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        # RecursionError: nested deeper than the decoder goes
        raise _malformed(f"not a chat completion: {exc}", status, body, request_id) from None
    if not completion.choices:
        raise EmptyChoices("completion has no choices", status_code=status, request_id=request_id)
    refused = _refusal(completion.choices)
    if refused is not None:
        text = body.decode("utf-8", "replace")
        raise ContentRefused(refused, status_code=status, body=text, request_id=request_id)
    usage = completion.usage
    if usage is not None and min(usage.prompt_tokens, usage.completion_tokens) < 0:
        raise _malformed("negative token counts in usage", status, body, request_id)
    return CallResult(
        status_code=status,
        body=body,
        request_id=request_id or completion.id,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        latency_ms=latency_ms,
        ratelimit=parse_ratelimit_headers(headers),
    )


def _refusal(choices: list[Choice]) -> str | None:
    """Why no choice is usable when every one was filtered or refused (None otherwise)."""
    reasons = []
    for choice in choices:
        if choice.finish_reason == "content_filter":
            reasons.append("the reply was withheld by the content filter (content_filter)")
        elif choice.message.refusal:
            reasons.append(f"the model refused (refusal): {choice.message.refusal[:200]}")
        else:
            return None
    return reasons[0]


def _malformed(message: str, status: int, body: bytes, request_id: str) -> MalformedResponse:
    excerpt = body[:_BODY_EXCERPT].decode("utf-8", "replace")
    return MalformedResponse(message, status_code=status, body=excerpt, request_id=request_id)


class AiohttpTransport:
    """The aiohttp transport (`--transport aiohttp`): aiohttp + msgspec, one session, pool =
    concurrency. aiohttp is imported here, not with the module: the default transport
    (workers/http1.py) does without it, and importing it costs every command about a tenth of
    a second."""

    def __init__(self, base_url: str, api_key: str, concurrency: int, timeout_s: float) -> None:
        import aiohttp  # noqa: PLC0415 (see the class docstring)

        self._errors = (aiohttp.ClientError, OSError)
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        self._url = base_url.rstrip("/") + "/chat/completions"

    async def call(self, payload: bytes, stage: str) -> CallResult:
        started = time.perf_counter()
        try:
            async with self._session.post(
                self._url, data=payload, headers={STAGE_HEADER: stage}
            ) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except TimeoutError:
            raise CallTimeout("request timed out") from None
        except self._errors as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        return parse_response(status, headers, body, latency_ms)

    async def close(self) -> None:
        await self._session.close()
