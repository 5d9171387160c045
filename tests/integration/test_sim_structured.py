"""The simulator's replies to `response_format` requests (workers.sim.structured): valid JSON
following the schema, verdicts at the configured pass rate, a 400 for unknown types."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from engine.evaluation.templates import JUDGE_SCHEMA
from engine.evaluation.verdicts import parse_verdict
from workers.sim.app import RunningSimulator, start_simulator
from workers.sim.config import SimConfig, config_problems
from workers.sim.structured import json_reply, schema_of


def body(content: str, response_format: dict[str, Any] | None) -> bytes:
    request: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": content}]}
    if response_format is not None:
        request["response_format"] = response_format
    return json.dumps(request).encode()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession, sim: RunningSimulator, data: bytes
) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{sim.base_url}/chat/completions", data=data) as response:
        return response.status, await response.json()


async def test_a_json_schema_request_gets_a_verdict_that_parses(
    session: aiohttp.ClientSession,
) -> None:
    async with await start_simulator(SimConfig(pass_rate=0.5)) as sim:
        replies = []
        for i in range(200):
            status, data = await post(session, sim, body(f"judge answer {i}", JUDGE_SCHEMA))
            assert status == 200
            replies.append(parse_verdict(data["choices"][0]["message"]["content"]))
        again = await post(session, sim, body("judge answer 0", JUDGE_SCHEMA))
    assert again[1]["choices"][0]["message"]["content"] == json.dumps(
        {k: getattr(replies[0], k) for k in JUDGE_SCHEMA["json_schema"]["schema"]["properties"]},
        separators=(",", ":"),
    )
    passed = sum(v.score for v in replies)
    assert 70 <= passed <= 130  # binomial(200, 0.5): outside this with p < 1e-4


def test_the_pass_rate_decides_the_verdicts() -> None:
    schema = schema_of(body("q", JUDGE_SCHEMA))
    assert schema is not None
    for rate, expected in ((0.0, 0), (1.0, 1)):
        scores = [
            parse_verdict(json_reply(schema, bytes([i]) * 16, 0, rate)[0]).score for i in range(50)
        ]
        assert set(scores) == {expected}
    assert config_problems(SimConfig(pass_rate=1.5)) == ["pass_rate must be within [0, 1], got 1.5"]


def test_json_object_uses_the_quoted_keys_and_enums_pick_every_option() -> None:
    schema = schema_of(body('Reply with JSON: "choice" and "needs_more"', {"type": "json_object"}))
    assert schema is not None
    value = json.loads(json_reply(schema, b"x" * 16, 0, 0.5)[0])
    assert set(value) == {"choice", "needs_more"}
    assert isinstance(value["needs_more"], bool)
    enum = {"type": "object", "properties": {"prefer": {"enum": ["A", "B"]}}}
    picks = {json.loads(json_reply(enum, bytes([i]) * 16, 0, 0.5)[0])["prefer"] for i in range(40)}
    assert picks == {"A", "B"}
    assert schema_of(body("q", {"type": "text"})) is None
    assert schema_of(body("q", None)) is None


async def test_an_unknown_response_format_is_a_400_that_says_why(
    session: aiohttp.ClientSession,
) -> None:
    async with await start_simulator(SimConfig()) as sim:
        status, data = await post(session, sim, body("q", {"type": "xml"}))
    assert status == 400
    assert "response_format type 'xml' is not supported" in data["error"]["message"]
    assert data["error"]["param"] == "response_format"


async def test_a_stream_is_read_by_the_openai_sdk_chunk_by_chunk() -> None:
    from openai import AsyncOpenAI  # noqa: PLC0415 (only this test needs the SDK)

    async with await start_simulator(SimConfig(output_tokens=30)) as sim:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
        try:
            messages: Any = [{"role": "user", "content": "stream me"}]
            whole = await client.chat.completions.create(model="m", messages=messages)
            chunks = await client.chat.completions.create(
                model="m", messages=messages, stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            parts, finish, usage = [], None, None
            async for chunk in chunks:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                    finish = chunk.choices[0].finish_reason or finish
                usage = chunk.usage or usage
        finally:
            await client.close()
    text = "".join(parts)
    assert len(parts) > 3
    assert re.fullmatch(r"[a-z]+( [a-z]+)*", text)
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == len(text.split())  # 1 word = 1 token, as unstreamed
    assert whole.usage is not None
    assert whole.choices[0].message.content != text  # "stream" is part of the request body
