"""The built-in simulator: a real aiohttp server on 127.0.0.1, a real client, real subprocesses.

Pure parts (reply lengths, fault bands, rate-limit buckets) are stepped with fake time.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import signal
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from multidict import CIMultiDict

from schemas.openai import (
    ChatResponse,
    ErrorBody,
    ModelList,
    any_decoder,
    chat_response_decoder,
    error_body_decoder,
)
from workers.sim.app import RunningSimulator, create_app, start_simulator
from workers.sim.config import InvalidSimConfig, SimConfig, config_problems
from workers.sim.faults import Fault, FaultPlan, draw_latency_s, in_outage
from workers.sim.limits import SimRateLimiter, TokenBucket, format_duration
from workers.sim.stats import SimStats
from workers.sim.text import VOCAB, ReplyMaker, fingerprint, seed_key

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"^simulator listening on http://127\.0\.0\.1:(\d+)/v1$")
WORD = r"[a-z]+"


def chat_body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession,
    sim: RunningSimulator,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, CIMultiDict[str]]:
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    async with session.post(
        f"{sim.base_url}/chat/completions",
        data=data,
        headers={"content-type": "application/json", **(headers or {})},
    ) as response:
        return response.status, await response.read(), response.headers.copy()


async def completion(
    session: aiohttp.ClientSession, sim: RunningSimulator, body: dict[str, Any]
) -> ChatResponse:
    status, raw, _headers = await post(session, sim, body)
    assert status == 200, raw
    return chat_response_decoder.decode(raw)


async def get_stats(session: aiohttp.ClientSession, sim: RunningSimulator) -> SimStats:
    async with session.get(f"http://127.0.0.1:{sim.port}/stats") as response:
        assert response.status == 200
        return msgspec.json.decode(await response.read(), type=SimStats)


async def wait_for_in_flight(session: aiohttp.ClientSession, stats_url: str, *, busy: bool) -> None:
    """Poll GET /stats until the server is (busy) or is not handling a request."""
    for _attempt in range(500):
        async with session.get(stats_url) as response:
            stats = msgspec.json.decode(await response.read(), type=SimStats)
        if (stats.in_flight > 0) == busy:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the simulator never became {'busy' if busy else 'idle'}")


def error_of(raw: bytes) -> ErrorBody:
    return error_body_decoder.decode(raw)


# --- completions ---------------------------------------------------------------------------


async def test_completion_has_the_openai_shape_and_usage(session: aiohttp.ClientSession) -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Is it fair to tax sugar?"},
    ]
    async with await start_simulator(SimConfig()) as sim:
        status, raw, headers = await post(session, sim, {"model": "gpt-x", "messages": messages})
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["x-request-id"].startswith("req_")
    raw_json = any_decoder.decode(raw)
    assert raw_json["object"] == "chat.completion"
    assert raw.count(b'"object"') == 1
    response = chat_response_decoder.decode(raw)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]+", response.id)
    assert response.model == "gpt-x"
    assert response.created > 1_600_000_000
    [choice] = response.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    content = choice.message.content or ""
    assert re.fullmatch(rf"{WORD}( {WORD})*", content)
    chars = len("You are helpful.") + len("Is it fair to tax sugar?")
    assert response.usage is not None
    assert response.usage.prompt_tokens == math.ceil(chars / 4) + 4 * 2
    assert response.usage.completion_tokens == len(content.split())
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


async def test_text_is_deterministic_in_the_body_and_seed(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig(seed=1)) as sim:
        first = await completion(session, sim, chat_body("What is a good life?"))
        again = await completion(session, sim, chat_body("What is a good life?"))
        other = await completion(session, sim, chat_body("What is a good life!"))
    async with await start_simulator(SimConfig(seed=2)) as reseeded_sim:
        reseeded = await completion(session, reseeded_sim, chat_body("What is a good life?"))
    text = first.choices[0].message.content
    assert text == again.choices[0].message.content
    assert first.id != again.id
    assert text != other.choices[0].message.content
    assert text != reseeded.choices[0].message.content


async def test_max_tokens_caps_the_reply(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig(output_tokens=40)) as sim:
        capped = await completion(session, sim, chat_body("q", max_tokens=3))
        capped_new = await completion(session, sim, chat_body("q", max_completion_tokens=2))
    assert capped.choices[0].finish_reason == "length"
    assert len((capped.choices[0].message.content or "").split()) == 3
    assert capped.usage is not None
    assert capped.usage.completion_tokens == 3
    assert len((capped_new.choices[0].message.content or "").split()) == 2


async def test_n_choices_differ_and_add_up(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig()) as sim:
        response = await completion(session, sim, chat_body("Name a value.", n=3))
    texts = [c.message.content or "" for c in response.choices]
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len(set(texts)) == 3
    assert response.usage is not None
    assert response.usage.completion_tokens == sum(len(t.split()) for t in texts)


async def test_persona_formats(session: aiohttp.ClientSession) -> None:
    critique = "Critique it. Answer as EVALUATION: ... SUGGESTIONS: ... then DONE."
    revise = (
        "Previous critique: EVALUATION: meh SUGGESTIONS: shorter DONE. Write REVISED PREFERENCE:"
    )
    async with await start_simulator(SimConfig(output_tokens=20)) as sim:
        evaluation = await completion(session, sim, chat_body(critique))
        revision = await completion(session, sim, chat_body(revise))
    assert re.fullmatch(
        rf"EVALUATION: {WORD}( {WORD})* SUGGESTIONS: {WORD}( {WORD})* DONE",
        evaluation.choices[0].message.content or "",
    )
    # A revise prompt quotes the critique, so "REVISED PREFERENCE:" takes precedence.
    assert re.fullmatch(
        rf"REVISED PREFERENCE: {WORD}( {WORD})* DONE", revision.choices[0].message.content or ""
    )


async def test_reply_form_fills_each_line(session: aiohttp.ClientSession) -> None:
    form = "Reply with these lines:\nVERDICT: <CONTROVERSIAL|NOT_CONTROVERSIAL>\nwhy not: <text>"
    verdicts: list[str] = []
    async with await start_simulator(SimConfig(output_tokens=10)) as sim:
        for number in range(24):
            reply = await completion(session, sim, chat_body(f"Question {number}?\n{form}"))
            text = reply.choices[0].message.content or ""
            match = re.fullmatch(rf"VERDICT: (\w+)\nwhy not: {WORD}( {WORD})*", text)
            assert match, text
            verdicts.append(match[1])
            assert reply.usage is not None
            assert reply.usage.completion_tokens == len(text.split())
        capped = await completion(session, sim, chat_body(f"Q?\n{form}", max_tokens=3))
        plain = await completion(session, sim, chat_body("Say VERDICT: <A|B> inline."))
    assert set(verdicts) == {"CONTROVERSIAL", "NOT_CONTROVERSIAL"}
    assert verdicts.count("CONTROVERSIAL") > verdicts.count("NOT_CONTROVERSIAL")
    assert capped.choices[0].finish_reason == "length"
    assert re.fullmatch(r"VERDICT: \w+\nwhy", capped.choices[0].message.content or "")
    assert re.fullmatch(rf"{WORD}( {WORD})*", plain.choices[0].message.content or "")


def test_reply_lengths_vary_around_the_mean() -> None:
    maker = ReplyMaker(64)
    key = seed_key(0)
    lengths = [
        maker.reply(fingerprint(f"body {i}".encode(), key), 0, "plain", None)[1]
        for i in range(2000)
    ]
    assert min(lengths) >= 32
    assert max(lengths) <= 96
    assert abs(statistics.mean(lengths) - 64) < 2.0
    assert len(set(lengths)) > 50
    assert len(VOCAB) == len(set(VOCAB)) == 256


# --- request errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"model": "m"}', "invalid_request"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "invalid_request"),
        (b'{"model": "m", "messages": []}', "invalid_value"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}',
            "invalid_value",
        ),
    ],
)
async def test_bad_body_is_400(session: aiohttp.ClientSession, body: bytes, code: str) -> None:
    async with await start_simulator(SimConfig()) as sim:
        status, raw, _headers = await post(session, sim, body)
    assert status == 400
    error = error_of(raw).error
    assert error.type == "invalid_request_error"
    assert error.code == code


async def test_unknown_model_is_404_and_models_are_listed(
    session: aiohttp.ClientSession,
) -> None:
    async with await start_simulator(SimConfig(models=("sim-a", "sim-b"))) as sim:
        status, raw, _headers = await post(session, sim, {**chat_body("x"), "model": "gpt-9"})
        known = await completion(session, sim, {**chat_body("x"), "model": "sim-b"})
        async with session.get(f"{sim.base_url}/models") as response:
            listed = msgspec.json.decode(await response.read(), type=ModelList)
    assert status == 404
    assert error_of(raw).error.code == "model_not_found"
    assert known.model == "sim-b"
    assert [card.id for card in listed.data] == ["sim-a", "sim-b"]


# --- stats -----------------------------------------------------------------------------------


async def test_stats_count_duplicates_statuses_and_stages(
    session: aiohttp.ClientSession,
) -> None:
    async with await start_simulator(SimConfig()) as sim:
        usages = []
        for stage, content in [("answer", "a"), ("answer", "a"), ("critique", "b"), (None, "a")]:
            headers = {"X-Engine-Stage": stage} if stage else None
            status, raw, _headers = await post(session, sim, chat_body(content), headers)
            assert status == 200
            usages.append(chat_response_decoder.decode(raw).usage)
        await post(session, sim, b"nope")
        stats = await get_stats(session, sim)
        assert msgspec.to_builtins(stats) == sim.stats()
        async with session.post(f"http://127.0.0.1:{sim.port}/stats/reset") as response:
            assert response.status == 200
        after_reset = await get_stats(session, sim)
    assert stats.requests_received == 5
    assert stats.completions_served == 4
    assert stats.unique_completions == 2
    assert stats.duplicate_completions == 2
    assert stats.by_status == {"200": 4, "400": 1}
    assert stats.by_stage == {"answer": 2, "critique": 1}
    assert stats.prompt_tokens == sum(u.prompt_tokens for u in usages if u)
    assert stats.completion_tokens == sum(u.completion_tokens for u in usages if u)
    assert stats.in_flight == 0
    assert after_reset == SimStats(0, 0, 0, 0, {}, 0, 0, {}, 0)


# --- rate limits -----------------------------------------------------------------------------


async def test_rpm_exceeded_gives_429_with_retry_after(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig(rpm=60)) as sim:
        first_status, _raw, first_headers = await post(session, sim, chat_body("x"))
        status, raw, headers = await post(session, sim, chat_body("y"))
        stats = await get_stats(session, sim)
    assert first_status == 200
    assert first_headers["x-ratelimit-limit-requests"] == "60"
    assert first_headers["x-ratelimit-remaining-requests"] == "0"
    assert re.fullmatch(r"\d+ms|[\d.]+s", first_headers["x-ratelimit-reset-requests"])
    assert "x-ratelimit-limit-tokens" not in first_headers
    assert status == 429
    assert error_of(raw).error.code == "rate_limit_exceeded"
    assert headers["retry-after"] == "1"
    assert 0 < int(headers["retry-after-ms"]) <= 1000
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert stats.by_status == {"200": 1, "429": 1}


@pytest.mark.parametrize("mode", ["bare", "retry-after"])
async def test_rpm_limit_mode_strips_the_headers(session: aiohttp.ClientSession, mode: str) -> None:
    config = SimConfig(rpm=60, rpm_limit_mode=mode)  # type: ignore[arg-type]
    async with await start_simulator(config) as sim:
        first_status, _raw, first_headers = await post(session, sim, chat_body("x"))
        status, raw, headers = await post(session, sim, chat_body("y"))
    assert first_status == 200
    assert status == 429
    assert error_of(raw).error.code == "rate_limit_exceeded"
    for answer in (first_headers, headers):
        assert not [name for name in answer if name.lower().startswith("x-ratelimit")]
    assert "retry-after-ms" not in headers
    if mode == "bare":
        assert "retry-after" not in headers
        assert "try again" not in error_of(raw).error.message
    else:
        assert headers["retry-after"] == "1"


async def test_tpm_counts_prompt_and_max_tokens(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig(tpm=600)) as sim:  # 10 tokens a second
        first_status, _raw, first_headers = await post(session, sim, chat_body("x", max_tokens=50))
        status, _raw, headers = await post(session, sim, chat_body("x", max_tokens=50))
    assert first_status == 200  # larger than the bucket, admitted once it is full
    assert first_headers["x-ratelimit-limit-tokens"] == "600"
    assert first_headers["x-ratelimit-remaining-tokens"] == "0"
    assert status == 429
    # cost 5 + 50 = 55 left the bucket at 10 - 55 = -45: 5.5 s until it holds 10 again
    # (less the time between the two requests)
    assert headers["retry-after"] in {"5", "6"}
    assert 4500 <= int(headers["retry-after-ms"]) <= 5500


def test_token_bucket_never_exceeds_the_limit_over_time() -> None:
    limiter = SimRateLimiter(rpm=600, tpm=None, now_s=0.0)  # 10 a second, burst of 10
    admitted = sum(limiter.admit(1, step / 1000) == 0.0 for step in range(10_001))
    assert 109 <= admitted <= 110  # the initial second's worth, then exactly the rate
    bucket = TokenBucket(60, now_s=0.0)
    bucket.take(1.0)
    assert bucket.wait_s(1.0) == pytest.approx(1.0)
    bucket.refill(0.5)
    assert bucket.wait_s(1.0) == pytest.approx(0.5)
    assert bucket.reset_s() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.12, "120ms"), (0.0, "0ms"), (1.5, "1.5s"), (2.0, "2s"), (360, "6m0s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- injected faults -------------------------------------------------------------------------


async def test_error_rate_gives_500_and_503(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig(error_rate=1.0)) as sim:
        statuses = [(await post(session, sim, chat_body(f"q{i}")))[0] for i in range(12)]
        stats = await get_stats(session, sim)
    assert set(statuses) == {500, 503}
    assert stats.completions_served == 0


async def test_rate_limit_rate_gives_429_under_the_limits(
    session: aiohttp.ClientSession,
) -> None:
    async with await start_simulator(SimConfig(rate_limit_rate=1.0)) as sim:
        status, raw, headers = await post(session, sim, chat_body("x"))
    assert status == 429
    assert error_of(raw).error.code == "rate_limit_exceeded"
    assert headers["retry-after"] == "1"
    assert headers["retry-after-ms"] == "250"


async def test_malformed_bodies_fail_decoding(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig(malformed_rate=1.0)) as sim:
        for i in range(9):
            status, raw, _headers = await post(session, sim, chat_body(f"q{i}"))
            assert status == 200
            with pytest.raises(msgspec.DecodeError):
                chat_response_decoder.decode(raw)
        stats = await get_stats(session, sim)
    assert stats.completions_served == 0
    assert stats.by_status == {"200": 9}


async def test_hang_times_the_client_out(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimConfig(timeout_rate=1.0)) as sim:
        with pytest.raises(TimeoutError):
            async with session.post(
                f"{sim.base_url}/chat/completions",
                data=msgspec.json.encode(chat_body("x")),
                timeout=aiohttp.ClientTimeout(total=0.2),
            ):
                pass
        # The abandoned request is cancelled on the server, not left hanging for hang_s.
        await wait_for_in_flight(session, f"http://127.0.0.1:{sim.port}/stats", busy=False)


async def test_stop_cuts_pending_hangs_short(session: aiohttp.ClientSession) -> None:
    sim = await start_simulator(SimConfig(timeout_rate=1.0, hang_s=60.0))
    pending = asyncio.create_task(post(session, sim, chat_body("x")))
    await wait_for_in_flight(session, f"http://127.0.0.1:{sim.port}/stats", busy=True)
    await sim.stop()
    status, raw, _headers = await pending
    assert status == 503
    assert error_of(raw).error.code == "shutting_down"
    assert sim.stats()["in_flight"] == 0


async def _until_answered(session: aiohttp.ClientSession, sim: RunningSimulator) -> float:
    """Post until a completion succeeds; the loop time of that success."""
    for _attempt in range(3000):
        status, _raw, _headers = await post(session, sim, chat_body("z"))
        if status == 200:
            return asyncio.get_running_loop().time()
        await asyncio.sleep(0.01)
    raise AssertionError("the outage never ended")


async def test_outage_window_then_recovery(session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    before_start = loop.time()
    async with await start_simulator(SimConfig(outage_after_s=0.0, outage_for_s=2.0)) as sim:
        status, raw, _headers = await post(session, sim, chat_body("x"))
        recovered_at = await _until_answered(session, sim)
    assert status == 503
    assert error_of(raw).error.message == "service unavailable (simulated outage)"
    assert recovered_at - before_start >= 2.0 - 0.01  # not before the window's end


async def test_outage_after_a_number_of_requests(session: aiohttp.ClientSession) -> None:
    config = SimConfig(outage_after_requests=3, outage_for_s=2.0)
    loop = asyncio.get_running_loop()
    async with await start_simulator(config) as sim:
        before = [(await post(session, sim, chat_body(f"x{i}")))[0] for i in range(2)]
        await asyncio.sleep(0.5)  # time alone starts nothing
        began = loop.time()
        first, _raw, _headers = await post(session, sim, chat_body("y"))
        recovered_at = await _until_answered(session, sim)
    assert before == [200, 200]
    assert first == 503  # from the 3rd request on
    assert recovered_at - began >= 2.0 - 0.01  # for outage_for_s, counted from that request


def test_outage_after_requests_is_checked() -> None:
    assert config_problems(SimConfig(outage_after_requests=0)) == [
        "outage_after_requests must be >= 1 or None, got 0"
    ]
    both = SimConfig(outage_after_s=1.0, outage_after_requests=5)
    assert config_problems(both) == ["give outage_after_s or outage_after_requests, not both"]


async def test_fixed_latency_delays_the_answer(session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    async with await start_simulator(SimConfig(latency_ms=50)) as sim:
        started = loop.time()
        await completion(session, sim, chat_body("x"))
        elapsed_s = loop.time() - started
    assert elapsed_s >= 0.05


def test_lognormal_latency_has_the_configured_median() -> None:
    config = SimConfig(latency_ms=200, latency_dist="lognormal", latency_sigma=0.8)
    rng = random.Random(0)
    draws = [draw_latency_s(config, rng) for _ in range(4000)]
    assert statistics.median(draws) == pytest.approx(0.2, rel=0.1)
    assert max(draws) > 0.6  # a real tail, not a fixed value


def test_fault_bands_and_outage_window() -> None:
    plan = FaultPlan(SimConfig(error_rate=0.2, timeout_rate=0.1, malformed_rate=0.3))
    assert plan.draw(0.05) is Fault.SERVER_ERROR
    assert plan.draw(0.15) is Fault.OVERLOADED
    assert plan.draw(0.25) is Fault.HANG
    assert plan.draw(0.35) is Fault.TRUNCATED_JSON
    assert plan.draw(0.45) is Fault.NOT_JSON
    assert plan.draw(0.55) is Fault.NO_CHOICES
    assert plan.draw(0.65) is Fault.NONE
    config = SimConfig(outage_after_s=10.0, outage_for_s=5.0)
    assert [in_outage(t, config) for t in (9.9, 10.0, 14.9, 15.0)] == [False, True, True, False]
    by_count = SimConfig(outage_after_requests=100, outage_for_s=5.0)
    assert not in_outage(50.0, by_count, None)  # not begun yet
    assert [in_outage(t, by_count, 3.0) for t in (2.9, 3.0, 7.9, 8.0)] == [
        False,
        True,
        True,
        False,
    ]


def test_config_problems_are_all_reported_and_refused() -> None:
    config = SimConfig(error_rate=0.6, timeout_rate=0.6, rpm=0, latency_ms=-1.0)
    problems = config_problems(config)
    assert len(problems) == 3
    assert any("sum to at most 1" in p for p in problems)
    assert any(p.startswith("rpm") for p in problems)
    assert any(p.startswith("latency_ms") for p in problems)
    with pytest.raises(InvalidSimConfig) as refused:
        create_app(config)
    assert refused.value.problems == problems
    assert config_problems(SimConfig()) == []
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"latency_s": 1}, SimConfig)


# --- run_forever in a real subprocess ----------------------------------------------------------


async def spawn_simulator(config_expr: str) -> tuple[asyncio.subprocess.Process, str]:
    code = f"from workers.sim.app import SimConfig, run_forever; run_forever({config_expr})"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode().rstrip("\n")
    match = LISTENING.fullmatch(line)
    assert match, line
    return process, f"http://127.0.0.1:{match.group(1)}/v1"


async def finish(process: asyncio.subprocess.Process, signum: int) -> tuple[int, bytes]:
    process.send_signal(signum)
    assert process.stdout is not None
    rest = await asyncio.wait_for(process.stdout.read(), timeout=10)
    return await asyncio.wait_for(process.wait(), timeout=10), rest


async def test_run_forever_serves_until_sigterm(session: aiohttp.ClientSession) -> None:
    process, base_url = await spawn_simulator("SimConfig()")
    async with session.post(
        f"{base_url}/chat/completions", data=msgspec.json.encode(chat_body("x"))
    ) as response:
        assert response.status == 200
        chat_response_decoder.decode(await response.read())
    returncode, rest = await finish(process, signal.SIGTERM)
    assert returncode == 0
    assert rest == b""


async def test_run_forever_cancels_hangs_on_sigint(session: aiohttp.ClientSession) -> None:
    process, base_url = await spawn_simulator("SimConfig(timeout_rate=1.0)")
    stats_url = base_url.removesuffix("/v1") + "/stats"

    async def hanging() -> int:
        async with session.post(
            f"{base_url}/chat/completions", data=msgspec.json.encode(chat_body("x"))
        ) as response:
            return response.status

    pending = asyncio.create_task(hanging())
    await wait_for_in_flight(session, stats_url, busy=True)
    returncode, _rest = await finish(process, signal.SIGINT)
    assert returncode == 0
    assert await pending == 503
