"""Export a PERSONA run's finished pairs: pairs.jsonl, pairs.dpo.jsonl, pairs.release.jsonl.

A pair is exported when its revise job is done (so its answer and critique are too). The
files are rewritten whole from the queue (temporary files, then renamed), so an export is
never half-written and can be repeated at any time. The pairs are read from the run's `pair`
records in their order, 2,000 at a time, each batch's three calls a pair with one
`done_rows` read.
"""

from __future__ import annotations

import collections
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import BinaryIO

import msgspec

from engine.errors import storage_error_of
from engine.persona import templates
from engine.persona.graph import completion_text
from engine.persona.sampling import Pair
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.job import TerminalRow
from schemas.pair import CallTokens, DpoRecord, PairRecord, ReleaseRecord
from schemas.prompt import Prompt

PAIRS = "pairs.jsonl"
DPO = "pairs.dpo.jsonl"
RELEASE = "pairs.release.jsonl"
PAIR_KIND = "pair"
_CHUNK = 2000
_encoder = msgspec.json.Encoder()
_pair_decoder = msgspec.json.Decoder(Pair)


def dpo_prompt(persona: str, question: str) -> str:
    return f"You are talking with this person:\n{persona}\n\nTheir question: {question}"


async def export_pairs(
    queue: WorkQueue,
    run_dir: Path,
    prices: Mapping[str, Price],
    personas: Mapping[str, str],
    prompts: Mapping[str, Prompt],
) -> int:
    """Write the three files from the queue; return how many pairs they hold."""
    shared: collections.Counter[str] = collections.Counter()
    async for _, value in queue.iter_records(PAIR_KIND):
        shared[_pair_decoder.decode(value).prompt_id] += 1
    names = (PAIRS, DPO, RELEASE)
    tmp = {name: run_dir / f".{name}.tmp" for name in names}
    try:
        count = await _write_files(queue, tmp, prices, personas, prompts, shared)
    except OSError as exc:
        for path in tmp.values():  # a full disk: no half-written copy left taking the space
            path.unlink(missing_ok=True)
        raise storage_error_of(exc, run_dir / PAIRS) or exc from None
    for name in names:
        os.replace(tmp[name], run_dir / name)
    return count


async def _write_files(
    queue: WorkQueue,
    tmp: Mapping[str, Path],
    prices: Mapping[str, Price],
    personas: Mapping[str, str],
    prompts: Mapping[str, Prompt],
    shared: collections.Counter[str],
) -> int:
    """The three files' temporary copies, written and synced; how many pairs they hold."""
    count = 0
    with (
        tmp[PAIRS].open("wb") as pairs,
        tmp[DPO].open("wb") as dpo,
        tmp[RELEASE].open("wb") as release,
    ):
        async for chunk in _pair_chunks(queue):
            rows = await queue.done_rows([job for pair in chunk for job in _jobs_of(pair)])
            for pair in chunk:
                calls = [row for job in _jobs_of(pair) if (row := rows.get(job)) is not None]
                if len(calls) < len(_jobs_of(pair)):
                    continue  # not finished (or a parent failed for good)
                record = _record(pair, calls, personas, prompts, shared, prices)
                _write(pairs, record)
                _write(
                    dpo,
                    DpoRecord(
                        dpo_prompt(record.persona, record.prompt), record.chosen, record.rejected
                    ),
                )
                _write(release, _release_view(record))
                count += 1
        for handle in (pairs, dpo, release):
            handle.flush()
            os.fsync(handle.fileno())
    return count


async def _pair_chunks(queue: WorkQueue) -> AsyncIterator[list[Pair]]:
    chunk: list[Pair] = []
    async for _, value in queue.iter_records(PAIR_KIND, _CHUNK):
        chunk.append(_pair_decoder.decode(value))
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _jobs_of(pair: Pair) -> tuple[str, str, str]:
    key = f"{pair.persona_id}:{pair.prompt_id}"
    return f"answer:{pair.prompt_id}", f"critique:{key}", f"revise:{key}"


def _release_view(record: PairRecord) -> ReleaseRecord:
    return ReleaseRecord(
        record.persona, record.prompt, record.rejected, record.critique, record.chosen, record.split
    )


def _write(handle: BinaryIO, record: msgspec.Struct) -> None:
    handle.write(_encoder.encode(record) + b"\n")


def _tokens(row: TerminalRow, shared_by: int = 1) -> CallTokens:
    return CallTokens(row.model, row.prompt_tokens, row.completion_tokens, row.cached, shared_by)


def _record(
    pair: Pair,
    calls: list[TerminalRow],
    personas: Mapping[str, str],
    prompts: Mapping[str, Prompt],
    shared: Mapping[str, int],
    prices: Mapping[str, Price],
) -> PairRecord:
    answer_row, critique_row, revise_row = calls
    prompt = prompts[pair.prompt_id]
    answer = _tokens(answer_row, shared[pair.prompt_id])
    critique = _tokens(critique_row)
    revise = _tokens(revise_row)
    return PairRecord(
        persona_id=pair.persona_id,
        persona=personas[pair.persona_id],
        prompt_id=pair.prompt_id,
        prompt=prompt.text,
        topic=prompt.topic,
        split=pair.split,
        rejected=completion_text(answer_row.result or b""),
        critique=templates.parse_critique(completion_text(critique_row.result or b"")),
        chosen=templates.parse_revision(completion_text(revise_row.result or b"")),
        answer_call=answer,
        critique_call=critique,
        revise_call=revise,
        cost_usd=_cost((answer, critique, revise), prices),
    )


def _cost(calls: tuple[CallTokens, ...], prices: Mapping[str, Price]) -> float | None:
    """This pair's share of what was paid (cached calls cost nothing)."""
    total = 0.0
    for call in calls:
        price = prices.get(call.model)
        if price is None:
            return None
        if not call.cached:
            total += price.cost(call.prompt_tokens, call.completion_tokens) / call.shared_by
    return round(total, 8)
