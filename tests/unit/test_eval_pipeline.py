"""The evaluate pipeline run in-process by the engine core (fake transport, in-memory queue):
answers, judge children built from the parsed answers, format errors retried, the report."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import InputError, SettingsError
from engine.evaluation import templates
from engine.evaluation.pipeline import EvaluatePipeline, split_id
from engine.evaluation.report import SIMULATED_NOTE
from engine.evaluation.samples import EvalSettings, draw_samples
from engine.evaluation.verdicts import FormatError, parse_answer, parse_verdict
from engine.output import OutputFiles
from engine.queue import WorkQueue
from engine.queue.memory import MemoryQueue
from engine.run import Coordinator, RunConfig
from tests.fakes import NO_BACKOFF, FakeTransport, fake_dispatcher, user_text
from workers.executor import done

SETTINGS = EvalSettings(n=6, k=2, seed=5)


def verdict(passes: bool) -> str:
    keys = dict.fromkeys(templates.JUDGE_KEYS, "words")
    return json.dumps({**keys, "needs_revision": not passes})


class Provider:
    """Answers name their mode; a judge passes answers of the chain_of_thought mode only.
    The first judge reply is not JSON (a format error: retried)."""

    def __init__(self) -> None:
        self.judge_calls = 0

    def __call__(self, payload: bytes) -> str:
        text = user_text(payload)
        if "needs_revision" not in text:
            mode = "cot" if "REASONING:" in text else "other"
            unique = hashlib.sha256(payload).hexdigest()[:8]  # no two judge requests alike
            return f"REASONING: fine\nANSWER: a {mode} answer {unique}"
        self.judge_calls += 1
        if self.judge_calls == 1:
            return "I think it is fine."
        return verdict("a cot answer" in text)


@pytest.fixture
async def queue() -> AsyncIterator[WorkQueue]:
    q = MemoryQueue()
    yield q
    await q.close()


async def run(
    queue: WorkQueue, pipeline: EvaluatePipeline, transport: FakeTransport, run_dir: Path
) -> None:
    await pipeline.prepare(queue)
    output = OutputFiles(run_dir)
    await output.recover(queue)
    config = RunConfig(concurrency=4, claim_batch=8, commit_batch=8, retry=NO_BACKOFF)
    dispatcher = fake_dispatcher(transport, config.retry, validator=pipeline.check)
    try:
        async with asyncio.timeout(20):
            await Coordinator(queue, dispatcher, output, config, pipeline).run()
    finally:
        output.close()
    await pipeline.export(queue, run_dir, {}, pipeline.default_formats)


async def test_every_sample_is_answered_and_judged_once_per_mode_and_draw(
    queue: WorkQueue, tmp_path: Path
) -> None:
    transport = FakeTransport(Provider())
    await run(queue, EvaluatePipeline(SETTINGS, "cmd", simulated=True), transport, tmp_path)
    answers = [c for c in transport.calls if c.stage.startswith("answer.")]
    judges = [c for c in transport.calls if c.stage.startswith("judge.")]
    assert len(answers) == 4 * 6 * 2
    assert len(judges) == 4 * 6 * 2 + 1  # one retried format error
    for call in judges:
        text = user_text(call.payload)
        assert "ANSWER:" not in text.split("The answer:")[1]  # the parsed answer, not the reply
    counts = await queue.counts()
    assert counts.by_stage["judge.baseline"] == {"done": 12}


async def test_the_report_scores_each_sample_once_and_says_it_is_simulated(
    queue: WorkQueue, tmp_path: Path
) -> None:
    await run(
        queue,
        EvaluatePipeline(SETTINGS, "cmd", simulated=True),
        FakeTransport(Provider()),
        tmp_path,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    by_mode = {m["mode"]: m for m in report["modes"]}
    assert by_mode["chain_of_thought"]["accuracy"]["value"] == 1.0
    assert by_mode["baseline"]["accuracy"]["value"] == 0.0
    assert {m["scored"] for m in report["modes"]} == {6}
    assert by_mode["chain_of_thought"]["pass_at_k"] == [1.0, 1.0]
    cot_vs_base = next(
        c for c in report["comparisons"] if (c["a"], c["b"]) == ("baseline", "chain_of_thought")
    )
    assert (cot_vs_base["a_only"], cot_vs_base["b_only"]) == (0, 6)
    assert report["note"] == SIMULATED_NOTE
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.count(SIMULATED_NOTE) == 2
    assert "| chain_of_thought | 6 | 100.0 |" in markdown


async def test_samples_are_seeded_and_shared_by_every_mode(queue: WorkQueue) -> None:
    pipeline = EvaluatePipeline(SETTINGS)
    await pipeline.prepare(queue)
    again = draw_samples(SETTINGS)
    assert [s.id for s in again] == sorted(pipeline.samples)
    assert [(s.persona_id, s.prompt_id) for s in again] == [
        (s.persona_id, s.prompt_id) for s in pipeline.samples.values()
    ]
    other = draw_samples(EvalSettings(n=6, seed=6))
    assert [(s.persona_id, s.prompt_id) for s in other] != [
        (s.persona_id, s.prompt_id) for s in again
    ]
    ids = [job.id for job in pipeline.jobs(again)]
    per_mode = {
        mode: {split_id(i)[2] for i in ids if split_id(i)[1] == mode} for mode in templates.MODES
    }
    assert len({frozenset(v) for v in per_mode.values()}) == 1


async def test_a_resumed_pipeline_builds_the_same_judge_request(queue: WorkQueue) -> None:
    first = EvaluatePipeline(EvalSettings(n=1, modes=("baseline",)))
    await first.prepare(queue)
    [answer] = await queue.claim(10, now=1.0, lease_s=60.0)
    transport = FakeTransport(Provider())
    result = await transport.call(answer.payload, answer.stage)
    await queue.commit([done(answer, result, 1.0, 2.0)], {})
    [child] = await queue.claim(10, now=3.0, lease_s=60.0)
    resumed = EvaluatePipeline(EvalSettings(n=99))
    await resumed.load(queue)
    [a] = await first.build_requests(queue, [child])
    [b] = await resumed.build_requests(queue, [child])
    assert a.payload == b.payload
    assert "a other answer" in user_text(a.payload)


async def test_other_settings_on_the_same_run_directory_are_refused(queue: WorkQueue) -> None:
    await EvaluatePipeline(EvalSettings(n=2)).prepare(queue)
    with pytest.raises(SettingsError, match="new --run-dir"):
        await EvaluatePipeline(EvalSettings(n=3)).prepare(queue)


async def test_bad_inputs_enqueue_nothing(queue: WorkQueue, tmp_path: Path) -> None:
    missing = str(tmp_path / "none.jsonl")
    with pytest.raises(InputError, match=r"none\.jsonl"):
        await EvaluatePipeline(EvalSettings(personas_path=missing)).prepare(queue)
    with pytest.raises(SettingsError, match="--n"):
        await EvaluatePipeline(EvalSettings(n=10**9)).prepare(queue)
    assert (await queue.counts()).total == 0


def test_answers_and_verdicts_are_parsed_or_refused() -> None:
    assert parse_answer("REASONING: x\nANSWER: the answer\n", "marked") == "the answer"
    assert parse_answer('```json\n{"answer": "yes", "reasoning": "r"}\n```', "json") == "yes"
    for bad, fmt in (("no marker", "marked"), ("ANSWER:   ", "marked"), ('{"a": 1}', "json")):
        with pytest.raises(FormatError):
            parse_answer(bad, fmt)
    assert parse_verdict(verdict(True)).score == 1
    assert parse_verdict(verdict(False)).score == 0
    for bad in ("fine", '{"needs_revision": "no"}', verdict(True)[:-1]):
        with pytest.raises(FormatError):
            parse_verdict(bad)


class FemaleJudge:
    """Unique answers; a judge passes an answer when the persona it is shown is female."""

    def __call__(self, payload: bytes) -> str:
        text = user_text(payload)
        if "needs_revision" not in text:
            return f"ANSWER: answer {hashlib.sha256(payload).hexdigest()[:8]}"
        return verdict("\nsex: Female\n" in text)


async def test_leave_one_out_judges_each_answer_without_each_attribute(
    queue: WorkQueue, tmp_path: Path
) -> None:
    settings = EvalSettings(n=30, modes=("output_only",), loo=("sex", "age"))
    transport = FakeTransport(FemaleJudge())
    await run(queue, EvaluatePipeline(settings), transport, tmp_path)
    loo_calls = [user_text(c.payload) for c in transport.calls if c.stage == "loo.output_only"]
    assert len(loo_calls) == 2 * 30
    assert sum("\nsex: " not in t for t in loo_calls) == 30
    report = json.loads((tmp_path / "report.json").read_text())
    by_attribute = {r["attribute"]: r for r in report["loo"]}
    women = report["modes"][0]["accuracy"]["value"]
    assert 0 < women < 1
    assert by_attribute["age"]["agreement"]["kappa"] == 1.0
    assert by_attribute["age"]["change"] == 0.0
    assert by_attribute["sex"]["accuracy_without"] == 0.0
    assert by_attribute["sex"]["change"] == pytest.approx(-women)
    assert by_attribute["sex"]["agreement"]["kappa"] == 0.0
    assert "## Leave one out" in (tmp_path / "report.md").read_text()


async def test_an_unknown_leave_one_out_attribute_enqueues_nothing(queue: WorkQueue) -> None:
    with pytest.raises(SettingsError, match="--attributes: unknown attribute"):
        await EvaluatePipeline(EvalSettings(n=2, loo=("colour",))).prepare(queue)
    assert (await queue.counts()).total == 0


class StubbornJudge:
    """Answers; the judge of one sample never returns JSON (the rest pass)."""

    def __init__(self, sample_question: str) -> None:
        self.question = sample_question

    def __call__(self, payload: bytes) -> str:
        text = user_text(payload)
        if "needs_revision" not in text:
            return f"ANSWER: answer {hashlib.sha256(payload).hexdigest()[:8]}"
        return "no JSON here" if self.question in text else verdict(True)


async def test_a_judge_that_never_parses_fails_and_is_not_scored(
    queue: WorkQueue, tmp_path: Path
) -> None:
    settings = EvalSettings(n=5, modes=("baseline",))
    question = draw_samples(settings)[0].question
    transport = FakeTransport(StubbornJudge(question))
    await run(queue, EvaluatePipeline(settings), transport, tmp_path)
    refused = [
        c
        for c in transport.calls
        if c.stage == "judge.baseline" and question in user_text(c.payload)
    ]
    assert len(refused) == NO_BACKOFF.max_attempts * sum(
        s.question == question for s in draw_samples(settings)
    )
    report = json.loads((tmp_path / "report.json").read_text())
    [mode] = report["modes"]
    assert mode["scored"] == 5 - len(refused) // NO_BACKOFF.max_attempts
    assert mode["accuracy"]["value"] == 1.0  # the failed sample is not a silent 0 or 1
    assert mode["usage"]["failed"] == len(refused) // NO_BACKOFF.max_attempts
