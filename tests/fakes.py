"""A chat transport for in-process tests: canned replies, chosen failures, no network.

`FakeTransport` implements `workers.client.ChatTransport`. Each call is recorded, then (when
a `gate` is given) waits until the test sets it, then raises the error planned for that call
number, or asks `reply(payload)` for the assistant's text (which may itself raise a
`ProviderError`). The text is wrapped in a chat completion and goes through the real
`parse_response`, so a reply is exactly what the aiohttp transport would return.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping

import msgspec

from ratelimits.breaker import BreakerConfig, CircuitBreaker
from ratelimits.clock import FakeClock
from schemas.openai import ChatRequest
from workers.client import CallResult, parse_response
from workers.dispatch import Dispatcher, Validator
from workers.errors import ProviderError
from workers.executor import RetryPolicy

#: payload → the assistant's text (or raise a ProviderError)
Reply = Callable[[bytes], str]

#: retries fall due at once: tests never wait for a backoff
NO_BACKOFF = RetryPolicy(max_attempts=3, base_s=0.0, max_s=0.0, jitter=0.0)

_request_decoder = msgspec.json.Decoder(ChatRequest)
_encoder = msgspec.json.Encoder()


class Call(msgspec.Struct, frozen=True):
    number: int  # 1-based, in the order calls started
    stage: str
    payload: bytes


def user_text(payload: bytes) -> str:
    """The content of the request's last message."""
    return _request_decoder.decode(payload).messages[-1].content or ""


def echo(payload: bytes) -> str:
    return f"echo: {user_text(payload)}"


def completion(text: str, prompt_tokens: int = 3, completion_tokens: int = 5) -> bytes:
    return _encoder.encode(
        {
            "id": "cmpl-fake",
            "object": "chat.completion",
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


class FakeTransport:
    """`ChatTransport` answering from `reply`, failing the calls numbered in `failures`."""

    def __init__(
        self,
        reply: Reply = echo,
        failures: Mapping[int, ProviderError] | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self._reply = reply
        self._failures = dict(failures or {})
        self.gate = gate
        self.calls: list[Call] = []
        self.in_flight = 0
        self.closed = False
        self._started = asyncio.Condition()

    async def call(self, payload: bytes, stage: str) -> CallResult:
        number = len(self.calls) + 1
        self.calls.append(Call(number, stage, payload))
        self.in_flight += 1
        try:
            async with self._started:
                self._started.notify_all()
            if self.gate is not None:
                await self.gate.wait()
            error = self._failures.get(number)
            if error is not None:
                raise error
            body = completion(self._reply(payload))
        finally:
            self.in_flight -= 1
        return parse_response(200, {"x-request-id": f"req-{number}"}, body, 1.0)

    async def wait_for_calls(self, count: int) -> None:
        """Return once `count` calls have started (without any wall-clock wait)."""
        async with self._started:
            await self._started.wait_for(lambda: len(self.calls) >= count)

    def payloads(self, stage: str | None = None) -> list[bytes]:
        return [c.payload for c in self.calls if stage is None or c.stage == stage]

    async def close(self) -> None:
        self.closed = True


def fake_dispatcher(
    transport: FakeTransport,
    policy: RetryPolicy = NO_BACKOFF,
    *,
    coalesce: bool = True,
    validator: Validator | None = None,
) -> Dispatcher:
    """A dispatcher as `generate` builds one, without a limiter; the breaker's clock is fake,
    so it never wakes on its own."""
    breaker = CircuitBreaker(BreakerConfig(), FakeClock())
    return Dispatcher(
        transport, policy, breaker, None, random.Random(0), coalesce=coalesce, validator=validator
    )
