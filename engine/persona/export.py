"""Export a PERSONA run's finished pairs: pairs.jsonl, pairs.dpo.jsonl, pairs.release.jsonl.

A pair is exported when its revise job is done (so its answer and critique are too). The
files are rewritten whole from the queue (temporary files, then renamed), so an export is
never half-written and can be repeated at any time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from engine.persona import templates
from engine.persona.graph import completion_text
from engine.prices import Price
from schemas.pair import CallTokens, DpoRecord, PairRecord, ReleaseRecord

PAIRS = "pairs.jsonl"
DPO = "pairs.dpo.jsonl"
RELEASE = "pairs.release.jsonl"

_QUERY = """
SELECT pr.rowid, pr.persona_id, pe.text, pr.prompt_id, q.text, q.topic, pr.split,
       a.result, a.model, a.prompt_tokens, a.completion_tokens, a.cached,
       c.result, c.model, c.prompt_tokens, c.completion_tokens, c.cached,
       r.result, r.model, r.prompt_tokens, r.completion_tokens, r.cached
FROM pairs AS pr
JOIN personas AS pe ON pe.id = pr.persona_id
JOIN prompts AS q ON q.id = pr.prompt_id
JOIN jobs AS a ON a.id = 'answer:' || pr.prompt_id
JOIN jobs AS c ON c.id = 'critique:' || pr.persona_id || ':' || pr.prompt_id
JOIN jobs AS r ON r.id = 'revise:' || pr.persona_id || ':' || pr.prompt_id
WHERE r.status = 'done' AND pr.rowid > ?
ORDER BY pr.rowid LIMIT 2000
"""
_encoder = msgspec.json.Encoder()


def dpo_prompt(persona: str, question: str) -> str:
    return f"You are talking with this person:\n{persona}\n\nTheir question: {question}"


def export_pairs(db: sqlite3.Connection, run_dir: Path, prices: dict[str, Price]) -> int:
    """Write the three files from the queue (runs in the queue's thread); return pairs."""
    shared = dict(db.execute("SELECT prompt_id, count(*) FROM pairs GROUP BY prompt_id"))
    names = (PAIRS, DPO, RELEASE)
    tmp = {name: run_dir / f".{name}.tmp" for name in names}
    count = 0
    with (
        tmp[PAIRS].open("wb") as pairs,
        tmp[DPO].open("wb") as dpo,
        tmp[RELEASE].open("wb") as release,
    ):
        for record in _records(db, shared, prices):
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
    for name in names:
        os.replace(tmp[name], run_dir / name)
    return count


def _release_view(record: PairRecord) -> ReleaseRecord:
    return ReleaseRecord(
        record.persona, record.prompt, record.rejected, record.critique, record.chosen, record.split
    )


def _write(handle: BinaryIO, record: msgspec.Struct) -> None:
    handle.write(_encoder.encode(record) + b"\n")


def _records(
    db: sqlite3.Connection, shared: dict[str, int], prices: dict[str, Price]
) -> Iterator[PairRecord]:
    last = 0
    while rows := db.execute(_QUERY, (last,)).fetchall():
        for row in rows:
            yield _record(row, shared, prices)
        last = rows[-1][0]


def _record(row: Any, shared: dict[str, int], prices: dict[str, Price]) -> PairRecord:
    (_, persona_id, persona, prompt_id, prompt, topic, split) = row[:7]
    answer = CallTokens(row[8], row[9], row[10], bool(row[11]), shared[prompt_id])
    critique = CallTokens(row[13], row[14], row[15], bool(row[16]))
    revise = CallTokens(row[18], row[19], row[20], bool(row[21]))
    return PairRecord(
        persona_id=persona_id,
        persona=persona,
        prompt_id=prompt_id,
        prompt=prompt,
        topic=topic,
        split=split,
        rejected=completion_text(row[7]),
        critique=templates.parse_critique(completion_text(row[12])),
        chosen=templates.parse_revision(completion_text(row[17])),
        answer_call=answer,
        critique_call=critique,
        revise_call=revise,
        cost_usd=_cost((answer, critique, revise), prices),
    )


def _cost(calls: tuple[CallTokens, ...], prices: dict[str, Price]) -> float | None:
    """This pair's share of what was paid (cached calls cost nothing)."""
    total = 0.0
    for call in calls:
        price = prices.get(call.model)
        if price is None:
            return None
        if not call.cached:
            total += price.cost(call.prompt_tokens, call.completion_tokens) / call.shared_by
    return round(total, 8)
