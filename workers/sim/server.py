"""Request handling of the simulator: one `Simulator` per app holds its state and handlers.

A completion request goes through these steps, each of which may answer early:
outage window (503) -> decode and validate (400, 404) -> rate limits (429) -> injected 429
-> latency -> injected hang (then 504) / 500 / 503 / malformed 200, or the completion.
Closing the simulator cuts pending latencies and hangs short with a 503.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from typing import Any

import msgspec
from aiohttp import web

from schemas.openai import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Choice,
    Usage,
    chat_request_decoder,
    json_encoder,
)
from workers.sim import bodies, streaming, structured
from workers.sim.batches import BatchApi
from workers.sim.config import SimConfig
from workers.sim.faults import Fault, FaultPlan, draw_latency_s, in_outage
from workers.sim.limits import SimRateLimiter, retry_after_headers
from workers.sim.stats import SimCounters, SimStats
from workers.sim.text import (
    PLAIN,
    ReplyMaker,
    fingerprint,
    prompt_tokens,
    reply_form,
    reply_kind,
    seed_key,
)

STAGE_HEADER = "X-Engine-Stage"
MAX_CHOICES = 128
INJECTED_RETRY_AFTER_S = 0.25  # what an injected 429 asks the client to wait


class Rejection(Exception):
    """A request answered with an error: the status, the encoded body and extra headers."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers

    def response(self) -> web.Response:
        return web.Response(
            status=self.status, body=self.body, content_type=bodies.JSON, headers=self.headers
        )


def _invalid(message: str, code: str, param: str | None = None) -> Rejection:
    return Rejection(400, bodies.error_body(message, "invalid_request_error", code, param))


def decode_request(body: bytes, models: frozenset[str]) -> ChatRequest:
    """The request in `body`, or a `Rejection` (400 malformed, 404 unknown model)."""
    try:
        chat = chat_request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _invalid(f"invalid request body: {exc}", "invalid_request") from None
    except msgspec.DecodeError as exc:
        raise _invalid(f"could not parse the JSON body: {exc}", "invalid_json") from None
    if not chat.messages:
        raise _invalid("'messages' must not be empty", "invalid_value", "messages")
    if chat.n is not None and not 1 <= chat.n <= MAX_CHOICES:
        raise _invalid(f"'n' must be within [1, {MAX_CHOICES}]", "invalid_value", "n")
    if chat.max_tokens is not None and chat.max_tokens < 1:
        raise _invalid("'max_tokens' must be >= 1", "invalid_value", "max_tokens")
    if chat.max_completion_tokens is not None and chat.max_completion_tokens < 1:
        name = "max_completion_tokens"
        raise _invalid(f"'{name}' must be >= 1", "invalid_value", name)
    if models and chat.model not in models:
        raise Rejection(404, bodies.model_not_found(chat.model))
    return chat


def _json_schema(body: bytes) -> dict[str, Any] | None:
    """The schema a `response_format` asks the reply to follow (None: plain text), or a 400."""
    if b'"response_format"' not in body:  # the common case, without a second decode
        return None
    try:
        return structured.schema_of(body)
    except structured.Unsupported as exc:
        raise _invalid(str(exc), "invalid_value", "response_format") from None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Simulator:
    """The state of one simulated API: config, counters, limits, fault and latency draws."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.counters = SimCounters()
        self.models_body = bodies.model_list(config.models or ("sim-small",))
        self._models = frozenset(config.models)
        self._outage_set = (
            config.outage_after_s is not None or config.outage_after_requests is not None
        )
        self._outage_began_s: float | None = None  # with outage_after_requests: when it began
        self._plan = FaultPlan(config)
        self._fault_rng = random.Random(config.seed)
        self._latency_rng = random.Random(f"latency-{config.seed}")
        self._seed_key = seed_key(config.seed)
        self._replies = ReplyMaker(config.output_tokens)
        self._id_prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self._waiters: set[asyncio.Future[None]] = set()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_s = 0.0
        self._limiter = SimRateLimiter(None, None, 0.0)
        self._authorization = None if config.api_key is None else f"Bearer {config.api_key}"
        self.batches = BatchApi(self)

    async def on_startup(self, _app: web.Application) -> None:
        """Start the clocks: the outage window and the rate-limit buckets count from here."""
        self._loop = asyncio.get_running_loop()
        self._started_s = self._loop.time()
        self._limiter = SimRateLimiter(self.config.rpm, self.config.tpm, self._started_s)

    async def on_shutdown(self, _app: web.Application) -> None:
        self.close()

    def close(self) -> None:
        """Cut every pending latency or hang short (those requests get 503)."""
        self._closing = True
        for waiter in self._waiters:
            _wake(waiter)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the simulator app has not been started")
        return self._loop

    async def _pause(self, delay_s: float) -> None:
        """Wait `delay_s`; raise a 503 `Rejection` if the simulator closes meanwhile."""
        if delay_s > 0.0 and not self._closing:
            loop = self._running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            timer = loop.call_later(delay_s, _wake, waiter)
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiters.discard(waiter)
        if self._closing:
            raise Rejection(503, bodies.SHUTTING_DOWN)

    # --- handlers -------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.Response:
        counters = self.counters
        counters.requests_received += 1
        if counters.requests_received == self.config.outage_after_requests:
            self._outage_began_s = self._running_loop().time() - self._started_s
        counters.in_flight += 1
        # Both draws happen on arrival, so a seed fixes the sequence whatever the timing.
        fault = self._plan.draw(self._fault_rng.random()) if self._plan.any_fault else Fault.NONE
        latency_s = draw_latency_s(self.config, self._latency_rng)
        try:
            response = await self._answer(request, fault, latency_s)
        except Rejection as rejection:
            response = rejection.response()
        finally:
            counters.in_flight -= 1
        counters.count_status(response.status)
        return response

    async def _answer(self, request: web.Request, fault: Fault, latency_s: float) -> web.Response:
        loop = self._running_loop()
        authorization = self._authorization
        if authorization is not None and request.headers.get("Authorization") != authorization:
            raise Rejection(401, bodies.INVALID_API_KEY)
        elapsed_s = loop.time() - self._started_s
        if self._outage_set and in_outage(elapsed_s, self.config, self._outage_began_s):
            raise Rejection(503, bodies.OUTAGE)
        body = await request.read()
        chat = decode_request(body, self._models)
        schema = _json_schema(body)
        n = chat.n or 1
        cap = chat.max_completion_tokens or chat.max_tokens
        prompt = prompt_tokens(chat.messages)
        headers = self._admit(prompt + n * (cap or self._replies.max_words), loop.time())
        if fault is Fault.RATE_LIMITED:
            headers.update(retry_after_headers(INJECTED_RETRY_AFTER_S))
            raise Rejection(429, bodies.RATE_LIMITED, headers)
        await self._pause(latency_s)
        if fault is not Fault.NONE:
            return await self._inject(fault, headers, body, chat, prompt, cap)
        request_id = self._next_id()
        payload, fp, completion = self._render(body, chat, prompt, cap, request_id, schema)
        self.counters.count_completion(fp, prompt, completion, request.headers.get(STAGE_HEADER))
        headers["x-request-id"] = f"req_{request_id}"
        stream, include_usage = streaming.wants_stream(body)
        if stream:  # server-sent events (workers.sim.streaming)
            sse = streaming.sse_body(payload, include_usage)
            return web.Response(body=sse, content_type=streaming.CONTENT_TYPE, headers=headers)
        return web.Response(body=payload, content_type=bodies.JSON, headers=headers)

    def _admit(self, cost_tokens: int, now_s: float) -> dict[str, str]:
        """The rate-limit headers for an admitted request; a 429 `Rejection` otherwise."""
        limiter = self._limiter
        if not limiter.enabled:
            return {}
        wait_s = limiter.admit(cost_tokens, now_s)
        mode = self.config.rpm_limit_mode
        headers = limiter.headers() if mode == "headers" else {}
        if wait_s > 0.0:
            if mode == "headers":
                headers.update(retry_after_headers(wait_s))
            elif mode == "retry-after":
                headers["retry-after"] = retry_after_headers(wait_s)["retry-after"]
            said = None if mode == "bare" else wait_s
            raise Rejection(429, bodies.over_limit(said), headers)
        return headers

    async def _inject(
        self,
        fault: Fault,
        headers: dict[str, str],
        body: bytes,
        chat: ChatRequest,
        prompt: int,
        cap: int | None,
    ) -> web.Response:
        """The response for an injected fault other than a 429."""
        if fault is Fault.HANG:
            await self._pause(self.config.hang_s)
            raise Rejection(504, bodies.HUNG, headers)
        if fault is Fault.SERVER_ERROR:
            raise Rejection(500, bodies.SERVER_ERROR, headers)
        if fault is Fault.OVERLOADED:
            raise Rejection(503, bodies.OVERLOADED, headers)
        request_id = self._next_id()
        if fault is Fault.CONTENT_FILTER:
            headers["x-request-id"] = f"req_{request_id}"
            filtered = self._filtered(chat, prompt, request_id)
            return web.Response(body=filtered, content_type=bodies.JSON, headers=headers)
        valid, _fp, _completion = self._render(body, chat, prompt, cap, request_id)
        broken, content_type = bodies.malformed_body(fault, valid, request_id)
        headers["x-request-id"] = f"req_{request_id}"
        return web.Response(body=broken, content_type=content_type, headers=headers)

    def _filtered(self, chat: ChatRequest, prompt: int, request_id: str) -> bytes:
        """A completion whose every choice the (simulated) content filter withheld."""
        message = ChatMessage(role="assistant")
        choices = [
            Choice(index=i, message=message, finish_reason="content_filter")
            for i in range(chat.n or 1)
        ]
        response = ChatResponse(
            id=f"chatcmpl-{request_id}",
            choices=choices,
            model=chat.model,
            created=int(time.time()),
            usage=Usage(prompt, 0, prompt),
        )
        return bodies.completion_body(response)

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):012x}"

    def _render(
        self,
        body: bytes,
        chat: ChatRequest,
        prompt: int,
        cap: int | None,
        request_id: str,
        schema: dict[str, Any] | None = None,
    ) -> tuple[bytes, bytes, int]:
        """(encoded chat.completion, request fingerprint, completion tokens)."""
        fp = fingerprint(body, self._seed_key)
        kind = reply_kind(chat.messages)
        form = reply_form(chat.messages) if kind == PLAIN else ()
        reply = self._replies.reply
        choices: list[Choice] = []
        completion = 0
        for index in range(chat.n or 1):
            if schema is not None:  # response_format: JSON (workers.sim.structured)
                text, words = structured.json_reply(schema, fp, index, self.config.pass_rate)
                truncated = False
            elif form:
                text, words, truncated = self._replies.form_reply(fp, index, form, cap)
            else:
                text, words, truncated = reply(fp, index, kind, cap)
            completion += words
            message = ChatMessage(role="assistant", content=text)
            finish = "length" if truncated else "stop"
            choices.append(Choice(index=index, message=message, finish_reason=finish))
        response = ChatResponse(
            id=f"chatcmpl-{request_id}",
            choices=choices,
            model=chat.model,
            created=int(time.time()),
            usage=Usage(prompt, completion, prompt + completion),
        )
        return bodies.completion_body(response), fp, completion

    def complete_line(self, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one Batch API line (workers.sim.batches): the same validation
        and reply as `chat_completions`, without latency, limits or online faults."""
        try:
            chat = decode_request(body, self._models)
            schema = _json_schema(body)
        except Rejection as rejection:
            return rejection.status, rejection.body
        cap = chat.max_completion_tokens or chat.max_tokens
        payload, _fp, _completion = self._render(
            body, chat, prompt_tokens(chat.messages), cap, self._next_id(), schema
        )
        return 200, payload

    def snapshot(self) -> SimStats:
        """The counters of `GET /stats`: the online ones and the Batch API's."""
        return msgspec.structs.replace(self.counters.snapshot(), **self.batches.counters())

    async def models(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.models_body, content_type=bodies.JSON)

    async def stats(self, _request: web.Request) -> web.Response:
        return web.Response(body=json_encoder.encode(self.snapshot()), content_type=bodies.JSON)

    async def reset_stats(self, _request: web.Request) -> web.Response:
        self.counters.reset()
        self.batches.reset()
        return await self.stats(_request)
