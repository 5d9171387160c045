"""Export a PERSONA run's finished pairs, in the formats asked for.

    parquet   pairs.parquet, pairs.dpo.parquet, pairs.release.parquet (zstd; the default:
              `datasets.load_dataset("parquet", …)` and pandas read them, each persona's text
              is stored about once per row group instead of once per row)
    pairs     pairs.jsonl            everything about a pair (schemas.pair.PairRecord)
    dpo       pairs.dpo.jsonl        TRL's DPO format
    release   pairs.release.jsonl    the public release's columns

A pair is exported when its revise job is done (so its answer and critique are too). The
files are rewritten whole from the queue (temporary files, then renamed), so an export is
never half-written and can be repeated at any time. The pairs are read from the run's `pair`
records in their order, 2,000 at a time, each batch's three calls a pair with one
`done_rows` read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncIterator, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

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

if TYPE_CHECKING:
    from engine.persona.parquet import ParquetViews

PAIRS = "pairs.jsonl"
DPO = "pairs.dpo.jsonl"
RELEASE = "pairs.release.jsonl"
PARQUET = ("pairs.parquet", "pairs.dpo.parquet", "pairs.release.parquet")  # engine.persona.parquet
FORMATS = ("parquet", "pairs", "dpo", "release")
DEFAULT_FORMATS = ("parquet",)
PAIR_KIND = "pair"
_CHUNK = 1000
_encoder = msgspec.json.Encoder()
_pair_decoder = msgspec.json.Decoder(Pair)


def dpo_prompt(persona: str, question: str) -> str:
    return f"You are talking with this person:\n{persona}\n\nTheir question: {question}"


def file_names(formats: Collection[str]) -> list[str]:
    """The files the formats write, in `FORMATS` order."""
    jsonl = {"pairs": [PAIRS], "dpo": [DPO], "release": [RELEASE], "parquet": list(PARQUET)}
    return [name for f in FORMATS if f in formats for name in jsonl[f]]


async def export_pairs(
    queue: WorkQueue,
    run_dir: Path,
    prices: Mapping[str, Price],
    personas: Mapping[str, str],
    prompts: Mapping[str, Prompt],
    formats: Collection[str] = DEFAULT_FORMATS,
) -> int:
    """Write the files of `formats` from the queue; return how many pairs they hold."""
    shared: collections.Counter[str] = collections.Counter()
    async for _, value in queue.iter_records(PAIR_KIND):
        shared[_pair_decoder.decode(value).prompt_id] += 1
    names = file_names(formats)
    tmp = {name: run_dir / f".{name}.tmp" for name in names}
    try:
        count = await _write_files(queue, tmp, prices, personas, prompts, shared)
    except OSError as exc:
        for path in tmp.values():  # a full disk: no half-written copy left taking the space
            path.unlink(missing_ok=True)
        raise storage_error_of(exc, run_dir / names[0]) or exc from None
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
    """The files' temporary copies, written and synced; how many pairs they hold."""
    count = 0
    # Three things overlap: the queue reads the next chunk's calls (its thread), this thread
    # makes records of this chunk, and a third writes the previous chunk (pyarrow's encoding
    # and compression let go of the GIL).
    loop = asyncio.get_running_loop()
    # one writer thread, not the default pool's several: each thread that allocates gets a
    # malloc arena of its own, and the export's memory would grow by one per thread
    with _Writers(tmp) as out, ThreadPoolExecutor(1, thread_name_prefix="export") as thread:
        writing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        writing.set_result(None)
        try:
            async for chunk, rows in _chunks_with_calls(queue):
                records = []
                for pair in chunk:
                    calls = [row for job in _jobs_of(pair) if (row := rows.get(job)) is not None]
                    if len(calls) < len(_jobs_of(pair)):
                        continue  # not finished (or a parent failed for good)
                    records.append(_record(pair, calls, personas, prompts, shared, prices))
                await writing
                writing = loop.run_in_executor(thread, out.write, records)
                count += len(records)
        finally:
            # the files close only after the last write (even when something failed)
            await asyncio.wait([writing])
        await writing
    return count


def _dpo_view(record: PairRecord) -> DpoRecord:
    return DpoRecord(dpo_prompt(record.persona, record.prompt), record.chosen, record.rejected)


class _Writers:
    """The open output files of one export (temporary names until every one is complete)."""

    def __init__(self, tmp: Mapping[str, Path]) -> None:
        self._tmp = tmp
        self._stack = contextlib.ExitStack()
        self._jsonl: list[tuple[BinaryIO, Any]] = []
        self._parquet: ParquetViews | None = None

    def __enter__(self) -> _Writers:
        views = {
            PAIRS: lambda r: r,
            DPO: _dpo_view,
            RELEASE: _release_view,
        }
        parquet = {name: path for name, path in self._tmp.items() if name in PARQUET}
        if parquet:
            from engine.persona.parquet import ParquetViews  # noqa: PLC0415 (pyarrow: ~50 MB)

            self._parquet = self._stack.enter_context(contextlib.closing(ParquetViews(parquet)))
        for name, path in self._tmp.items():
            if name not in PARQUET:
                self._jsonl.append((self._stack.enter_context(path.open("wb")), views[name]))
        return self

    def write(self, records: list[PairRecord]) -> None:
        if not records:
            return
        for handle, view in self._jsonl:
            handle.write(b"".join(_encoder.encode(view(r)) + b"\n" for r in records))
        if self._parquet is not None:
            self._parquet.write(records, [dpo_prompt(r.persona, r.prompt) for r in records])

    def __exit__(self, *exc: object) -> None:
        with self._stack:
            if exc[0] is None:
                for handle, _ in self._jsonl:
                    handle.flush()
                    os.fsync(handle.fileno())
        if exc[0] is None:
            for path in self._tmp.values():
                _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _chunks_with_calls(
    queue: WorkQueue,
) -> AsyncIterator[tuple[list[Pair], dict[str, TerminalRow]]]:
    """Each chunk of pairs with its finished calls, the next chunk's read already started."""
    pending: tuple[list[Pair], asyncio.Task[dict[str, TerminalRow]]] | None = None
    async for chunk in _pair_chunks(queue):
        ids = [job for pair in chunk for job in _jobs_of(pair)]
        reading = asyncio.create_task(queue.done_rows(ids))
        if pending is not None:
            yield pending[0], await pending[1]
        pending = (chunk, reading)
    if pending is not None:
        yield pending[0], await pending[1]


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
