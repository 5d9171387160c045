"""The openai-SDK transport (`--transport sdk`).

For providers whose quirks the SDK handles (its base URL, auth and header handling, its HTTP
client), and as the benchmark's baseline. The SDK's own retries are off (`max_retries=0`):
retries are the engine's. It uses the SDK's aiohttp client, which holds up under hundreds of
requests in flight where its default transport does not.

The request goes out through the client's generic `post` with the job's payload bytes as the
body, and comes back raw (status, headers, bytes; asked for with the header `with_raw_response`
sets): the payload was validated and canonicalised when it was enqueued, so the typed
`chat.completions.create` path would only re-validate and re-encode it (its parameter
transform cost 2.3-3.1 ms of CPU per call in the benchmark), and the engine parses the answer
itself, as it does for the aiohttp transport.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol, cast

import openai

from workers.client import STAGE_HEADER, CallResult, parse_response
from workers.errors import CallTimeout, TransportError

#: what `with_raw_response` sets: the SDK returns its raw response object instead of parsing
RAW_RESPONSE = {"X-Stainless-Raw-Response": "true"}


class _RawResponse(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...


class SdkTransport:
    def __init__(self, base_url: str, api_key: str, concurrency: int, timeout_s: float) -> None:
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=timeout_s),
        )
        self._concurrency = concurrency

    async def call(self, payload: bytes, stage: str) -> CallResult:
        started = time.perf_counter()
        headers = {"Content-Type": "application/json", STAGE_HEADER: stage, **RAW_RESPONSE}
        try:
            answer = await self._client.post(
                "/chat/completions", cast_to=bytes, content=payload, options={"headers": headers}
            )
        except openai.APITimeoutError:
            raise CallTimeout("request timed out") from None
        except openai.APIConnectionError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        except openai.APIStatusError as exc:
            response = exc.response
            latency_ms = (time.perf_counter() - started) * 1000.0
            return parse_response(
                response.status_code, response.headers, response.content, latency_ms
            )
        latency_ms = (time.perf_counter() - started) * 1000.0
        returned: object = answer
        if isinstance(returned, bytes):  # an SDK that ignores the raw-response header
            raise TransportError("the openai SDK returned a parsed body, not the raw response")
        raw = cast(_RawResponse, returned)
        return parse_response(raw.status_code, raw.headers, raw.content, latency_ms)

    async def close(self) -> None:
        await self._client.close()
