"""A pipeline of the test's own, run by the engine core without touching it.

Two stages: a "draft" job per item, whose finished reply releases a "polish" child; the
child's request embeds the draft's text and is built when the child is claimed (through
`queue.done_rows`). `check` rejects replies without the marker (InvalidOutput, retried);
`export` writes polished.jsonl. Run on the in-memory queue and on SQLite in tmp_path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.inputs import canonical_body, fingerprint
from engine.output import ERRORS, RESULTS, OutputFiles
from engine.pipeline import PIPELINE_KEY, RESULTS_FORMAT
from engine.prices import Price
from engine.queue import WorkQueue
from engine.queue.memory import MemoryQueue
from engine.queue.sqlite import SQLiteQueue
from engine.run import Coordinator, RunConfig, RunStats
from schemas.job import ClaimedJob, NewJob, TerminalRow
from schemas.openai import chat_response_decoder
from tests.fakes import NO_BACKOFF, FakeTransport, fake_dispatcher, user_text
from workers.client import CallResult
from workers.errors import InvalidOutput, PermanentError
from workers.executor import done

MARKER = "[ok]"
ITEM_KIND = "item"
DRAFT_PREFIX = "Draft a note about: "
POLISH_PREFIX = "Polish this draft: "


def reply_text(body: bytes) -> str:
    return chat_response_decoder.decode(body).choices[0].message.content or ""


def request(text: str) -> tuple[bytes, str]:
    payload = canonical_body({"model": "m", "messages": [{"role": "user", "content": text}]})
    return payload, fingerprint(payload)


class DraftPolish:
    """The test's pipeline: draft:{item} → polish:{item} (an `engine.pipeline.Pipeline`: mypy
    checks it where the Coordinator takes it)."""

    name = "draft-polish"
    export_formats = ("polished",)
    default_formats = (RESULTS_FORMAT, "polished")

    def __init__(self, items: Mapping[str, str]) -> None:
        self.items = dict(items)  # item id → topic

    async def prepare(self, queue: WorkQueue) -> None:
        jobs: list[NewJob] = []
        for line, (item, topic) in enumerate(self.items.items(), start=1):
            payload, fp = request(DRAFT_PREFIX + topic)
            jobs.append(NewJob(f"draft:{item}", fp, payload, "draft", line, "m"))
        for item in self.items:  # no request yet: built from the draft when claimed
            jobs.append(NewJob(f"polish:{item}", "", b"", "polish", 0, "m", 0, f"draft:{item}"))
        records = {ITEM_KIND: [(item, topic.encode()) for item, topic in self.items.items()]}
        await queue.enqueue(jobs, records, {PIPELINE_KEY: self.name})

    async def build_requests(self, queue: WorkQueue, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        parents = [f"draft:{self._item(job)}" for job in jobs if not job.payload]
        if not parents:
            return jobs
        drafts = await queue.done_rows(parents)
        return [job if job.payload else self._polish(job, drafts) for job in jobs]

    def _polish(self, job: ClaimedJob, drafts: Mapping[str, TerminalRow]) -> ClaimedJob:
        draft = drafts[f"draft:{self._item(job)}"]
        assert draft.result is not None
        payload, fp = request(POLISH_PREFIX + reply_text(draft.result))
        return msgspec.structs.replace(job, payload=payload, fingerprint=fp)

    @staticmethod
    def _item(job: ClaimedJob) -> str:
        return job.id.split(":", 1)[1]

    def check(self, job: ClaimedJob, result: CallResult) -> None:
        text = reply_text(result.body)
        if MARKER not in text:
            raise InvalidOutput(f"no {MARKER} in the {job.stage}", status_code=200, body=text)

    async def export(
        self,
        queue: WorkQueue,
        run_dir: Path,
        prices: Mapping[str, Price],
        formats: Collection[str],
    ) -> str | None:
        if "polished" not in formats:
            return None
        items = [item async for item, _ in queue.iter_records(ITEM_KIND)]
        polished = await queue.done_rows([f"polish:{item}" for item in items])
        lines = []
        for item in items:
            row = polished.get(f"polish:{item}")
            if row is not None and row.result is not None:
                lines.append(json.dumps({"item": item, "text": reply_text(row.result)}) + "\n")
        (run_dir / "polished.jsonl").write_text("".join(lines))
        return f"exported {len(lines)} notes"


class Provider:
    """The fake provider's behaviour: drafts and polishes with the marker, except that the
    first draft about "beta" forgets it and every draft about "gamma" is refused."""

    def __init__(self) -> None:
        self.beta_drafts = 0

    def __call__(self, payload: bytes) -> str:
        text = user_text(payload)
        if text.startswith(DRAFT_PREFIX):
            topic = text.removeprefix(DRAFT_PREFIX)
            if topic == "gamma":
                raise PermanentError("HTTP 400", status_code=400, body='{"error":"refused"}')
            if topic == "beta":
                self.beta_drafts += 1
                if self.beta_drafts == 1:
                    return "draft on beta (forgot the marker)"
            return f"{MARKER} draft on {topic}"
        return f"{MARKER} polished <{text.removeprefix(POLISH_PREFIX)}>"


@pytest.fixture(params=["memory", "sqlite"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WorkQueue]:
    q: WorkQueue
    if request.param == "sqlite":
        q = await SQLiteQueue.open(tmp_path / "queue.sqlite")
    else:
        q = MemoryQueue()
    yield q
    await q.close()


async def run(
    queue: WorkQueue, pipeline: DraftPolish, transport: FakeTransport, run_dir: Path
) -> RunStats:
    """What `generate` does around the core: prepare, recover the files, run, export."""
    await pipeline.prepare(queue)
    output = OutputFiles(run_dir)
    await output.recover(queue)
    config = RunConfig(concurrency=3, claim_batch=2, commit_batch=2, retry=NO_BACKOFF)
    dispatcher = fake_dispatcher(transport, config.retry, validator=pipeline.check)
    try:
        async with asyncio.timeout(10):
            stats = await Coordinator(queue, dispatcher, output, config, pipeline).run()
    finally:
        output.close()
    await pipeline.export(queue, run_dir, {}, pipeline.default_formats)
    return stats


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


ITEMS = {"a": "alpha", "b": "beta", "c": "gamma", "d": "delta"}


async def test_children_run_after_their_parents_with_the_parents_text(
    queue: WorkQueue, tmp_path: Path
) -> None:
    transport = FakeTransport(Provider())
    stats = await run(queue, DraftPolish(ITEMS), transport, tmp_path)

    texts = [user_text(c.payload) for c in transport.calls]
    polishes = [(n, t) for n, t in enumerate(texts) if t.startswith(POLISH_PREFIX)]
    assert len(polishes) == 3  # a, b, d: gamma's draft failed
    for n, text in polishes:
        draft_reply = text.removeprefix(POLISH_PREFIX)
        assert MARKER in draft_reply  # the accepted draft, never the rejected one
        topic = draft_reply.removeprefix(f"{MARKER} draft on ")
        last_draft = max(i for i, t in enumerate(texts) if t == DRAFT_PREFIX + topic)
        assert last_draft < n  # the child was sent after its parent's (final) call
    assert {c.stage for c in transport.calls} == {"draft", "polish"}

    results = {line["custom_id"]: line for line in read_lines(tmp_path / RESULTS)}
    assert sorted(results) == ["draft:a", "draft:b", "draft:d", "polish:a", "polish:b", "polish:d"]
    assert (stats.done, stats.failed) == (6, 1)


async def test_a_reply_without_the_marker_is_retried(queue: WorkQueue, tmp_path: Path) -> None:
    provider = Provider()
    transport = FakeTransport(provider)
    stats = await run(queue, DraftPolish(ITEMS), transport, tmp_path)
    assert provider.beta_drafts == 2
    assert stats.retried == 1
    results = {line["custom_id"]: line for line in read_lines(tmp_path / RESULTS)}
    assert results["draft:b"]["engine"]["attempts"] == 2
    assert "draft:b" not in {line["custom_id"] for line in read_lines(tmp_path / ERRORS)}


async def test_a_failed_parents_child_never_runs(queue: WorkQueue, tmp_path: Path) -> None:
    transport = FakeTransport(Provider())
    await run(queue, DraftPolish(ITEMS), transport, tmp_path)
    texts = [user_text(c.payload) for c in transport.calls]
    assert texts.count(DRAFT_PREFIX + "gamma") == 1  # refused for good at once
    assert not any("gamma" in t for t in texts if t.startswith(POLISH_PREFIX))
    [error] = read_lines(tmp_path / ERRORS)
    assert (error["custom_id"], error["error"]["code"]) == ("draft:c", "PermanentError")
    counts = await queue.counts()
    assert counts.by_stage["polish"] == {"done": 3, "waiting": 1}
    assert await queue.done_rows(["polish:c"]) == {}


async def test_the_export_holds_the_polished_notes_in_item_order(
    queue: WorkQueue, tmp_path: Path
) -> None:
    pipeline = DraftPolish(ITEMS)
    await run(queue, pipeline, FakeTransport(Provider()), tmp_path)
    assert (tmp_path / "polished.jsonl").read_text().splitlines() == [
        json.dumps({"item": "a", "text": f"{MARKER} polished <{MARKER} draft on alpha>"}),
        json.dumps({"item": "b", "text": f"{MARKER} polished <{MARKER} draft on beta>"}),
        json.dumps({"item": "d", "text": f"{MARKER} polished <{MARKER} draft on delta>"}),
    ]
    assert await queue.get_meta(PIPELINE_KEY) == "draft-polish"


async def test_a_child_claimed_in_a_later_session_gets_the_same_request(
    queue: WorkQueue, tmp_path: Path
) -> None:
    """Requests are built from the queue, not from memory: a fresh pipeline object (a new
    process) builds the same polish request for a draft finished in an earlier session."""
    pipeline = DraftPolish({"a": "alpha"})
    await pipeline.prepare(queue)
    [draft] = await queue.claim(10, now=1.0, lease_s=60.0)
    first = FakeTransport(Provider())
    result = await first.call(draft.payload, draft.stage)
    await queue.commit([done(draft, result, 1.0, 2.0)], {})
    [child] = await queue.claim(10, now=3.0, lease_s=60.0)
    assert child.payload == b""
    [built] = await DraftPolish({"a": "alpha"}).build_requests(queue, [child])
    [again] = await pipeline.build_requests(queue, [child])
    assert built.payload == again.payload
    assert user_text(built.payload) == f"{POLISH_PREFIX}{MARKER} draft on alpha"
    assert built.fingerprint == fingerprint(built.payload)
