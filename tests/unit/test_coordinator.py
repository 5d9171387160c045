"""The coordinator in-process: the in-memory queue, a fake transport, output files in tmp_path.

No network and no wall-clock sleeps: retries fall due at once (no backoff), calls that must
stay in flight wait on an event the test sets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.inputs import canonical_body, fingerprint
from engine.output import ERRORS, RESULTS, OutputFiles
from engine.queue import CacheSpec, WorkQueue
from engine.queue.memory import Cache, MemoryQueue
from engine.requests import RequestsPipeline
from engine.run import Coordinator, RunConfig, RunStats
from schemas.job import NewJob
from tests.fakes import NO_BACKOFF, FakeTransport, fake_dispatcher, user_text
from workers.errors import (
    PermanentError,
    ProviderError,
    RateLimited,
    ServerError,
    TransportError,
    error_for_status,
)
from workers.executor import RetryPolicy

SMALL = RunConfig(concurrency=4, claim_batch=3, commit_batch=2, grace_s=5.0, retry=NO_BACKOFF)


def make_job(i: int, text: str | None = None) -> NewJob:
    body = {"model": "m", "messages": [{"role": "user", "content": text or f"question {i}"}]}
    payload = canonical_body(body)
    return NewJob(f"job-{i}", fingerprint(payload), payload, model="m", line=i + 1)


def coordinator(
    queue: WorkQueue,
    transport: FakeTransport,
    output: OutputFiles,
    config: RunConfig = SMALL,
    coalesce: bool = True,
) -> Coordinator:
    dispatcher = fake_dispatcher(transport, config.retry, coalesce=coalesce)
    return Coordinator(queue, dispatcher, output, config, RequestsPipeline(None))


async def run_once(
    queue: WorkQueue,
    transport: FakeTransport,
    run_dir: Path,
    config: RunConfig = SMALL,
    coalesce: bool = True,
) -> RunStats:
    """One `generate` session: recover the output files, run until no work remains."""
    output = OutputFiles(run_dir)
    await output.recover(queue)
    try:
        async with asyncio.timeout(10):
            return await coordinator(queue, transport, output, config, coalesce).run()
    finally:
        output.close()


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def by_id(path: Path) -> dict[str, dict[str, Any]]:
    lines = read_lines(path)
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == len(set(ids)), f"a job appears twice in {path.name}: {ids}"
    return {line["custom_id"]: line for line in lines}


def content(line: dict[str, Any]) -> str:
    text: str = line["response"]["body"]["choices"][0]["message"]["content"]
    return text


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until `predicate` holds (event-loop turns, no clock)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


# -- every job once ------------------------------------------------------------------------


async def test_every_job_is_done_once_and_written_once(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(20)])
    transport = FakeTransport()
    stats = await run_once(queue, transport, tmp_path)
    assert stats.done == 20
    assert stats.failed == stats.retried == stats.cached == 0
    assert sorted(map(user_text, transport.payloads())) == sorted(
        f"question {i}" for i in range(20)
    )  # one call per job, none repeated
    results = by_id(tmp_path / RESULTS)
    assert set(results) == {f"job-{i}" for i in range(20)}
    for i in range(20):  # each line holds the answer to its own request
        assert content(results[f"job-{i}"]) == f"echo: question {i}"
        assert results[f"job-{i}"]["engine"]["attempts"] == 1
    assert read_lines(tmp_path / ERRORS) == []
    counts = await queue.counts()
    assert counts.by_status == {"done": 20}
    assert counts.attempts == 20
    assert counts.prompt_tokens == 20 * 3  # the fake's usage, summed
    assert transport.in_flight == 0


async def test_a_second_session_on_a_finished_queue_calls_nothing(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(5)])
    await run_once(queue, FakeTransport(), tmp_path)
    before = (tmp_path / RESULTS).read_bytes()
    again = FakeTransport()
    stats = await run_once(queue, again, tmp_path)
    assert again.calls == []
    assert stats.done == 0
    assert (tmp_path / RESULTS).read_bytes() == before


# -- errors --------------------------------------------------------------------------------


def flaky(plan: dict[str, list[ProviderError]]) -> Callable[[bytes], str]:
    """Per request text, the errors its next calls raise (in order); then it answers."""

    def reply(payload: bytes) -> str:
        text = user_text(payload)
        errors = plan.get(text)
        if errors:
            raise errors.pop(0)
        return f"echo: {text}"

    return reply


def server_error(status: int = 503) -> ServerError:
    return ServerError(f"HTTP {status}", status_code=status, body="overloaded")


async def test_retryable_errors_are_retried_and_attempts_counted(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(4)])
    plan: dict[str, list[ProviderError]] = {
        "question 0": [server_error(), server_error(502)],  # succeeds on the 3rd (last) attempt
        "question 1": [RateLimited("HTTP 429", retry_after_s=0.0)],
        "question 2": [TransportError("connection reset")],
        "question 3": [server_error(), server_error(), server_error()],  # never succeeds
    }
    transport = FakeTransport(flaky(plan))
    stats = await run_once(queue, transport, tmp_path)  # NO_BACKOFF: max_attempts=3
    calls = [user_text(p) for p in transport.payloads()]
    assert {f"question {i}": calls.count(f"question {i}") for i in range(4)} == {
        "question 0": 3,
        "question 1": 2,
        "question 2": 2,
        "question 3": 3,
    }
    assert (stats.done, stats.failed, stats.retried) == (3, 1, 6)
    results = by_id(tmp_path / RESULTS)
    assert {k: v["engine"]["attempts"] for k, v in results.items()} == {
        "job-0": 3,
        "job-1": 2,
        "job-2": 2,
    }
    [failed] = read_lines(tmp_path / ERRORS)
    assert failed["custom_id"] == "job-3"
    assert failed["engine"]["attempts"] == 3
    assert failed["error"]["code"] == "ServerError"
    assert failed["response"]["status_code"] == 503
    counts = await queue.counts()
    assert counts.by_status == {"done": 3, "failed": 1}
    assert counts.attempts == 3 + 2 + 2 + 3


async def test_errors_by_call_number(tmp_path: Path) -> None:
    """One worker: calls happen in job order, so the 1st and 3rd calls are the ones that fail."""
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(3)])
    failures = {1: server_error(500), 3: server_error(504)}
    transport = FakeTransport(failures=failures)
    config = RunConfig(concurrency=1, retry=NO_BACKOFF)
    stats = await run_once(queue, transport, tmp_path, config)
    assert len(transport.calls) == 5
    assert (stats.done, stats.retried) == (3, 2)
    assert sum(line["engine"]["attempts"] for line in read_lines(tmp_path / RESULTS)) == 5


async def test_permanent_error_fails_at_once_with_the_providers_error_kept(
    tmp_path: Path,
) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(0), make_job(1, text="bad request")])
    provider_body = '{"error": {"message": "unknown model m", "type": "invalid_request_error"}}'
    plan: dict[str, list[ProviderError]] = {
        "bad request": [error_for_status(400, provider_body, "req-400", None)]
    }
    transport = FakeTransport(flaky(plan))
    stats = await run_once(queue, transport, tmp_path)
    assert [user_text(p) for p in transport.payloads()].count("bad request") == 1  # no retry
    assert (stats.done, stats.failed, stats.retried) == (1, 1, 0)
    assert set(by_id(tmp_path / RESULTS)) == {"job-0"}
    [line] = read_lines(tmp_path / ERRORS)
    assert line["custom_id"] == "job-1"
    assert line["error"] == {"code": "PermanentError", "message": "HTTP 400"}
    assert line["response"]["status_code"] == 400
    assert line["response"]["request_id"] == "req-400"
    assert line["response"]["body"] == json.loads(provider_body)  # kept as JSON, not a string
    assert line["engine"]["attempts"] == 1
    assert (await queue.counts()).by_status == {"done": 1, "failed": 1}


async def test_permanent_error_is_not_retried_even_with_attempts_left(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(0)])
    transport = FakeTransport(failures={1: PermanentError("HTTP 403", status_code=403)})
    config = RunConfig(concurrency=2, retry=RetryPolicy(max_attempts=10, base_s=0.0))
    stats = await run_once(queue, transport, tmp_path, config)
    assert len(transport.calls) == 1
    assert stats.failed == 1


# -- paying once ---------------------------------------------------------------------------


async def test_cached_results_are_served_without_calling_the_transport(tmp_path: Path) -> None:
    shared: Cache = {}
    spec = CacheSpec(tmp_path / "cache.sqlite", "http://server-a/v1")
    first_dir, second_dir, other_dir = (tmp_path / n for n in ("first", "second", "other"))
    for d in (first_dir, second_dir, other_dir):
        d.mkdir()
    first = MemoryQueue(spec, shared)
    await first.enqueue([make_job(i) for i in range(3)])
    await run_once(first, FakeTransport(), first_dir)
    paid = by_id(first_dir / RESULTS)

    # another run naming the same cache: the same requests (other ids) cost nothing
    second = MemoryQueue(spec, shared)
    jobs = [make_job(i) for i in range(4)]  # job-3 is new
    await second.enqueue([msgspec.structs.replace(j, id=f"again-{j.id}") for j in jobs])
    transport = FakeTransport()
    stats = await run_once(second, transport, second_dir)
    assert [user_text(p) for p in transport.payloads()] == ["question 3"]
    assert (stats.done, stats.cached) == (4, 3)
    served = by_id(second_dir / RESULTS)
    for i in range(3):
        line = served[f"again-job-{i}"]
        assert line["engine"]["cached"] is True
        assert line["engine"]["attempts"] == 0
        assert line["response"]["body"] == paid[f"job-{i}"]["response"]["body"]
    assert "cached" not in served["again-job-3"]["engine"]  # paid for: omitted (default False)
    usage = (await second.counts()).by_model["m"]
    assert (usage.cached, usage.paid_prompt_tokens) == (3, 3)

    # the same cache under another endpoint's scope answers nothing
    other = MemoryQueue(CacheSpec(spec.path, "http://server-b/v1"), shared)
    await other.enqueue([make_job(i) for i in range(3)])
    elsewhere = FakeTransport()
    await run_once(other, elsewhere, other_dir)
    assert len(elsewhere.calls) == 3


async def test_identical_requests_in_flight_are_coalesced(tmp_path: Path) -> None:
    await _coalescing(tmp_path, coalesce=True, expected_calls=2)


async def test_without_coalescing_identical_requests_are_each_sent(tmp_path: Path) -> None:
    await _coalescing(tmp_path, coalesce=False, expected_calls=4)


async def _coalescing(tmp_path: Path, coalesce: bool, expected_calls: int) -> None:
    queue = MemoryQueue()
    same = [make_job(i, text="the same question") for i in range(3)]
    await queue.enqueue([*same, make_job(3)])
    gate = asyncio.Event()
    transport = FakeTransport(gate=gate)
    output = OutputFiles(tmp_path)
    await output.recover(queue)
    coord = coordinator(queue, transport, output, SMALL, coalesce)
    try:
        async with asyncio.timeout(10):
            task = asyncio.create_task(coord.run())
            await transport.wait_for_calls(expected_calls)
            await until(lambda: coord.stats.in_flight == 4)  # every job is inside dispatch
            assert len(transport.calls) == expected_calls
            gate.set()
            stats = await task
    finally:
        output.close()
    assert len(transport.calls) == expected_calls
    assert stats.done == 4
    assert stats.cached == (2 if coalesce else 0)
    results = by_id(tmp_path / RESULTS)
    assert {content(results[f"job-{i}"]) for i in range(3)} == {"echo: the same question"}
    assert sum(bool(results[f"job-{i}"]["engine"].get("cached")) for i in range(3)) == (
        2 if coalesce else 0
    )


# -- stopping ------------------------------------------------------------------------------


async def test_request_stop_releases_jobs_not_yet_sent(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(6)])
    gate = asyncio.Event()
    transport = FakeTransport(gate=gate)
    config = RunConfig(concurrency=2, grace_s=5.0, retry=NO_BACKOFF)
    output = OutputFiles(tmp_path)
    await output.recover(queue)
    coord = coordinator(queue, transport, output, config)
    try:
        async with asyncio.timeout(10):
            task = asyncio.create_task(coord.run())
            await transport.wait_for_calls(2)  # both workers are in a call
            coord.request_stop()
            gate.set()  # the calls in flight finish within the grace period
            stats = await task
    finally:
        output.close()
    assert len(transport.calls) == 2
    assert stats.done == 2
    counts = await queue.counts()
    assert counts.by_status == {"done": 2, "queued": 4}
    assert counts.attempts == 2  # a released job spent no attempt
    assert not await queue.has_running()
    sent = {user_text(p) for p in transport.payloads()}
    assert {content(line) for line in read_lines(tmp_path / RESULTS)} == {
        f"echo: {t}" for t in sent
    }

    # nothing was lost: the next session does exactly the rest
    rest = FakeTransport()
    await run_once(queue, rest, tmp_path)
    assert len(rest.calls) == 4
    assert sent.isdisjoint(user_text(p) for p in rest.payloads())
    assert set(by_id(tmp_path / RESULTS)) == {f"job-{i}" for i in range(6)}
    assert (await queue.counts()).by_status == {"done": 6}


@pytest.mark.parametrize(
    "jobs",
    [
        pytest.param(2, id="buffer-empty"),
        # FAILS (engine bug, left to the lead): with more jobs than workers the hand-out buffer
        # is full, the feeder waits in `_buffer.put` (or `_drain` in `put(None)`) for a worker
        # that is stuck in its call, so the grace period never starts and the run waits for
        # the calls to end by themselves (up to --timeout-s in a real run, forever here)
        pytest.param(5, id="buffer-full"),
    ],
)
async def test_stop_past_the_grace_period_puts_calls_in_flight_back(
    tmp_path: Path, jobs: int
) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(jobs)])
    transport = FakeTransport(gate=asyncio.Event())  # never set: the calls never answer
    config = RunConfig(concurrency=2, grace_s=0.0, retry=NO_BACKOFF)
    output = OutputFiles(tmp_path)
    await output.recover(queue)
    coord = coordinator(queue, transport, output, config)
    try:
        task = asyncio.create_task(coord.run())
        async with asyncio.timeout(10):
            await transport.wait_for_calls(2)
        coord.request_stop()
        try:
            async with asyncio.timeout(2):  # grace_s=0: the stop takes a few loop turns
                stats = await task
        except TimeoutError:
            raise AssertionError(
                f"the run did not stop within 2 s of request_stop() with grace_s=0 "
                f"({transport.in_flight} calls in flight)"
            ) from None
    finally:
        output.close()
    assert stats.done == stats.failed == 0
    assert transport.in_flight == 0  # the calls were cancelled
    counts = await queue.counts()
    assert counts.by_status == {"queued": jobs}
    assert counts.attempts == 0
    assert (tmp_path / RESULTS).read_bytes() == b""
