"""`python -m engine evaluate` as an engine pipeline: answer jobs, and a judge child for each.

    answer:{mode}:{sample}:{draw}   stage answer.{mode}: the evaluated model answers
    judge:{mode}:{sample}:{draw}    stage judge.{mode}: waits for its answer; its request (the
                                    persona, the question, the parsed answer) is built when
                                    claimed, from the answer's committed result

prepare   fresh run: draw the samples, enqueue the jobs with the samples as records and the
          settings, signature and command as meta; resumed run: the same signature, or
          SettingsChanged (use a new --run-dir: unchanged requests come from the cache)
check     answers follow their format, verdicts parse (InvalidOutput otherwise: retried)
export    report.json, report.md, report.png (engine.evaluation.report, .plot)
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from engine.errors import SettingsError
from engine.evaluation import REPORT_FORMAT, templates
from engine.evaluation.samples import (
    EvalSettings,
    Sample,
    check_attributes,
    draw_samples,
    signature,
    without_attribute,
)
from engine.evaluation.slices import Clause, check_not_empty
from engine.evaluation.verdicts import FormatError, parse_answer, parse_verdict, reply_text
from engine.inputs import canonical_body, estimate_tokens, fingerprint
from engine.persona.run import SettingsChanged
from engine.pipeline import PIPELINE_KEY, RESULTS_FORMAT
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.job import ClaimedJob, NewJob, TerminalRow
from schemas.openai import ChatMessage, ChatRequest
from workers.client import CallResult
from workers.errors import InvalidOutput

NAME = "evaluate"
SAMPLE_KIND = "sample"
SIGNATURE_KEY = "evaluate.signature"
SETTINGS_KEY = "evaluate.settings"
COMMAND_KEY = "evaluate.command"
SIMULATED_KEY = "evaluate.simulated"

_encoder = msgspec.json.Encoder()
_sample_decoder = msgspec.json.Decoder(Sample)
_settings_decoder = msgspec.json.Decoder(EvalSettings)


def answer_id(mode: str, sample: str, draw: int) -> str:
    return f"answer:{mode}:{sample}:{draw}"


def judge_id(mode: str, sample: str, draw: int) -> str:
    return f"judge:{mode}:{sample}:{draw}"


def split_id(job_id: str) -> tuple[str, str, str, int]:
    """(kind, mode, sample, draw) of a job id."""
    kind, mode, sample, draw = job_id.split(":")
    return kind, mode, sample, int(draw)


def _request(body: dict[str, Any]) -> tuple[bytes, str, int]:
    payload = canonical_body(body)
    messages = [ChatMessage(m["role"], m["content"]) for m in body["messages"]]
    chat = ChatRequest(model=body["model"], messages=messages, max_tokens=body["max_tokens"])
    return payload, fingerprint(payload), estimate_tokens(chat)


class EvaluatePipeline:
    name = NAME
    export_formats = (REPORT_FORMAT,)
    default_formats = (RESULTS_FORMAT, REPORT_FORMAT)

    def __init__(
        self,
        settings: EvalSettings,
        command: str = "",
        simulated: bool = False,
        where: tuple[Clause, ...] = (),
    ) -> None:
        self.settings = settings
        self.where = where  # report slices (engine.evaluation.slices), not part of the run
        self.command = command
        self.simulated = simulated  # on the built-in simulator: every report says so
        self.samples: dict[str, Sample] = {}

    async def prepare(self, queue: WorkQueue) -> None:
        wanted = signature(self.settings)
        stored = await queue.get_meta(SIGNATURE_KEY)
        if stored is not None:
            if stored != wanted:
                raise SettingsChanged(
                    "this run directory was started with other models, modes, sizes, seed, "
                    "inputs or templates: use a new --run-dir (unchanged requests come from "
                    "the cache)"
                )
            await self.load(queue)
            check_not_empty(self.where, [s.attributes for s in self.samples.values()])
            return
        if (await queue.counts()).total:
            kind = await queue.get_meta(PIPELINE_KEY) or "requests"
            raise SettingsChanged(f"this run directory holds a {kind} run, not an evaluate run")
        if self.settings.loo:
            check_attributes(self.settings.loo)
        samples = draw_samples(self.settings)
        check_not_empty(self.where, [s.attributes for s in samples])
        self.samples = {s.id: s for s in samples}
        records = {SAMPLE_KIND: [(s.id, _encoder.encode(s)) for s in samples]}
        meta = {
            SIGNATURE_KEY: wanted,
            SETTINGS_KEY: _encoder.encode(self.settings).decode(),
            COMMAND_KEY: self.command,
            SIMULATED_KEY: "1" if self.simulated else "",
            PIPELINE_KEY: NAME,
        }
        await queue.enqueue(self.jobs(samples), records, meta)

    async def load(self, queue: WorkQueue) -> None:
        raw = await queue.get_meta(SETTINGS_KEY)
        if raw is None:
            raise SettingsError("this run directory holds no evaluate settings")
        self.settings = _settings_decoder.decode(raw)
        self.command = await queue.get_meta(COMMAND_KEY) or self.command
        self.simulated = self.simulated or bool(await queue.get_meta(SIMULATED_KEY))
        async for key, value in queue.iter_records(SAMPLE_KIND):
            self.samples[key] = _sample_decoder.decode(value)

    def jobs(self, samples: list[Sample]) -> Iterator[NewJob]:
        """Answers first (mode by mode, draw by draw), then every judge, in the same order."""
        s = self.settings
        keys = [(m, x, d) for m in s.modes for d in range(s.k) for x in samples]
        for mode, sample, draw in keys:
            payload, fp, est = _request(self.answer_body(mode, sample, draw))
            yield NewJob(
                answer_id(mode, sample.id, draw), fp, payload, f"answer.{mode}", 0, s.model, est
            )
        for mode, sample, draw in keys:
            parent = answer_id(mode, sample.id, draw)
            judge = judge_id(mode, sample.id, draw)
            yield NewJob(judge, "", b"", f"judge.{mode}", 0, s.judge_model, 0, parent)
            for index in range(len(s.loo)):  # the same answer, judged without attribute i
                loo = f"loo{index}:{mode}:{sample.id}:{draw}"
                yield NewJob(loo, "", b"", f"loo.{mode}", 0, s.judge_model, 0, parent)

    def answer_body(self, mode: str, sample: Sample, draw: int) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "model": s.model,
            "messages": [
                {"role": "system", "content": templates.system_prompt(mode, sample.persona)},
                {
                    "role": "user",
                    "content": templates.answer_user(mode, sample.question, s.answer_format),
                },
            ],
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "seed": draw,  # the k draws of a sample are k distinct requests
        }
        if s.answer_format == "json":
            body["response_format"] = templates.answer_schema(mode)
        return body

    def judge_body(self, sample: Sample, answer: str) -> dict[str, Any]:
        s = self.settings
        user = templates.JUDGE_USER.format(
            persona=sample.persona, question=sample.question, answer=answer
        )
        body: dict[str, Any] = {
            "model": s.judge_model,
            "messages": [
                {"role": "system", "content": templates.JUDGE_SYSTEM},
                {"role": "user", "content": user},
            ],
            "max_tokens": s.judge_max_tokens,
            "temperature": 0.0,
        }
        if s.judge_format != "none":
            body["response_format"] = templates.judge_response_format(s.judge_format)
        return body

    async def build_requests(self, queue: WorkQueue, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        parents = [answer_id(*split_id(job.id)[1:]) for job in jobs if not job.payload]
        if not parents:
            return jobs
        rows = await queue.done_rows(parents)
        return [job if job.payload else self._judge(job, rows) for job in jobs]

    def _judge(self, job: ClaimedJob, rows: Mapping[str, TerminalRow]) -> ClaimedJob:
        kind, mode, sample, draw = split_id(job.id)
        row = rows.get(answer_id(mode, sample, draw))
        if row is None or row.result is None:
            raise LookupError(f"{answer_id(mode, sample, draw)} has no committed result")
        answer = parse_answer(reply_text(row.result), self.settings.answer_format)
        persona = self.samples[sample]
        if kind.startswith("loo"):
            attribute = self.settings.loo[int(kind.removeprefix("loo"))]
            persona = msgspec.structs.replace(
                persona, persona=without_attribute(persona.persona, attribute)
            )
        payload, fp, est = _request(self.judge_body(persona, answer))
        return msgspec.structs.replace(job, payload=payload, fingerprint=fp, est_tokens=est)

    def check(self, job: ClaimedJob, result: CallResult) -> None:
        text = reply_text(result.body)
        try:
            if not job.stage.startswith("answer."):
                parse_verdict(text)
            else:
                parse_answer(text, self.settings.answer_format)
        except FormatError as exc:
            raise InvalidOutput(str(exc), status_code=200, body=text[:4000]) from None

    async def export(
        self,
        queue: WorkQueue,
        run_dir: Path,
        prices: Mapping[str, Price],
        formats: Collection[str],
    ) -> str | None:
        from engine.evaluation.report import write_reports  # noqa: PLC0415 (scipy: on demand)

        if REPORT_FORMAT not in formats:
            return None
        return await write_reports(self, queue, run_dir, prices)


async def resume(queue: WorkQueue) -> EvaluatePipeline:
    pipeline = EvaluatePipeline(EvalSettings())
    await pipeline.load(queue)
    return pipeline
