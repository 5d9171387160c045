"""The openai-SDK transport (`--transport sdk`).

For providers whose quirks the SDK handles, and as the benchmark's baseline. The SDK's own
retries are off (`max_retries=0`): retries are the engine's. It uses the SDK's aiohttp client,
which holds up under hundreds of requests in flight where its default transport does not.
"""

from __future__ import annotations

import time

import openai

from schemas.openai import any_decoder
from workers.client import STAGE_HEADER, CallResult, parse_response
from workers.errors import CallTimeout, TransportError


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
        body = any_decoder.decode(payload)
        model = body.pop("model")
        messages = body.pop("messages")
        started = time.perf_counter()
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=model,
                messages=messages,
                extra_body=body or None,
                extra_headers={STAGE_HEADER: stage},
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
        return parse_response(raw.status_code, raw.headers, raw.content, latency_ms)

    async def close(self) -> None:
        await self._client.close()
