"""Systematic failures (issue 16): the coordinator stops when every call of a stage and model
is rejected the same way, and puts those jobs back; request-specific rejections still fail."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec

from engine.output import OutputFiles
from engine.queue.memory import MemoryQueue
from engine.run import RunConfig
from engine.systematic import Halt, Signature, SystematicFailures, signature_of
from schemas.job import ClaimedJob, ErrorInfo, Failed, Released
from tests.fakes import NO_BACKOFF, FakeTransport
from tests.unit.test_coordinator import coordinator, make_job, read_lines
from workers.errors import ProviderError, error_for_status

CONFIG = RunConfig(
    concurrency=4, claim_batch=4, commit_batch=8, grace_s=5.0, retry=NO_BACKOFF,
    stop_after_same_errors=5,
)  # fmt: skip


def rejection(status: int, code: str) -> ProviderError:
    body = json.dumps({"error": {"message": f"no ({code})", "type": "x", "code": code}})
    return error_for_status(status, body, "req", None)


async def run(
    queue: MemoryQueue, transport: FakeTransport, run_dir: Path
) -> tuple[int, Halt | None]:
    output = OutputFiles(run_dir)
    await output.recover(queue)
    try:
        coord = coordinator(queue, transport, output, CONFIG)
        async with asyncio.timeout(10):
            await coord.run()
    finally:
        output.close()
    return coord.systematic.released, coord.systematic.halt


async def test_a_wrong_key_stops_the_run_and_fails_nothing(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(200)])
    wrong_key = {n: rejection(401, "invalid_api_key") for n in range(1, 300)}
    transport = FakeTransport(failures=wrong_key)
    released, halt = await run(queue, transport, tmp_path)
    counts = await queue.counts()
    assert counts.by_status == {"queued": 200}
    assert counts.attempts == 0  # nothing spent: the same command runs them all again
    assert len(transport.calls) < 20  # stopped after 5 (+ those already in flight)
    assert released == len(transport.calls)
    assert halt is not None
    assert halt.signature == Signature(401, "invalid_api_key")
    assert not (tmp_path / "errors.jsonl").read_bytes()
    # the key fixed: the same queue completes, every job once
    await run(queue, FakeTransport(), tmp_path)
    assert (await queue.counts()).by_status == {"done": 200}
    assert len(read_lines(tmp_path / "results.jsonl")) == 200


async def test_request_errors_after_a_success_fail_without_stopping(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(64)])
    # calls 1-4 (the first claim) succeed; then 30 bad requests among good ones
    failures = {n: rejection(400, "invalid_value") for n in range(5, 65, 2)}
    transport = FakeTransport(failures=failures)
    released, halt = await run(queue, transport, tmp_path)
    assert halt is None
    assert released == 0
    counts = await queue.counts()
    assert counts.by_status == {"done": 34, "failed": 30}
    assert len(read_lines(tmp_path / "errors.jsonl")) == 30


async def test_held_failures_fail_when_the_run_ends_below_the_limit(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i) for i in range(3)])
    transport = FakeTransport(failures={n: rejection(401, "invalid_api_key") for n in range(1, 9)})
    released, halt = await run(queue, transport, tmp_path)
    assert halt is None
    assert released == 0
    assert (await queue.counts()).by_status == {"failed": 3}
    assert len(transport.calls) == 3


def _failed(seq: int, status: int, code: str) -> Failed:
    error = rejection(status, code)
    info = ErrorInfo(type(error).__name__, error.message, error.status_code, error.body)
    return Failed(seq, f"j{seq}", 1, info, 0.0, 0.0, 0.0)


def _job(seq: int, stage: str, model: str) -> ClaimedJob:
    return ClaimedJob(seq, f"j{seq}", stage, 0, "fp", b"", model=model)


def test_a_mistyped_model_of_one_stage_halts_that_stage_only() -> None:
    # the answers are done already (DONE jobs of stage answer in the queue)
    detector = SystematicFailures(3, proven=lambda stage, _model: stage == "answer")
    assert detector.observe(_job(1, "revise", "typo"), _failed(1, 404, "model_not_found")) == []
    assert detector.observe(_job(2, "revise", "typo"), _failed(2, 404, "model_not_found")) == []
    # a request error of a stage with answers done fails at once; the held ones wait
    ok = detector.observe(_job(3, "answer", "good"), _failed(3, 400, "invalid_value"))
    assert [type(o) for o in ok] == [Failed]
    out = detector.observe(_job(4, "revise", "typo"), _failed(4, 404, "model_not_found"))
    assert [o.seq for o in out] == [1, 2, 4]
    assert all(isinstance(o, Released) for o in out)
    assert detector.halt is not None
    assert detector.halt.stage == "revise"
    assert detector.halt.model == "typo"
    assert detector.halt.signature.status == 404


def test_different_rejections_do_not_add_up() -> None:
    detector = SystematicFailures(2)
    assert detector.observe(_job(1, "s", "m"), _failed(1, 400, "a")) == []
    assert detector.observe(_job(2, "s", "m"), _failed(2, 400, "b")) == []
    assert detector.halt is None
    assert sorted(o.seq for o in detector.release_all(as_failed=True)) == [1, 2]


def test_only_permanent_4xx_rejections_have_a_signature() -> None:
    assert signature_of(ErrorInfo("ServerError", "HTTP 503", 503)) is None
    assert signature_of(ErrorInfo("ContentRefused", "filtered", 200)) is None
    body = msgspec.json.encode({"error": {"code": "invalid_api_key"}}).decode()
    assert signature_of(ErrorInfo("PermanentError", "HTTP 401", 401, body)) == Signature(
        401, "invalid_api_key"
    )
