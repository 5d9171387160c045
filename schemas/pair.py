"""The exported preference pairs: our full record and the two views users load directly.

- `PairRecord` (pairs.jsonl): everything about a pair, with per-call tokens and cost.
- `DpoRecord` (pairs.dpo.jsonl): `prompt` / `chosen` / `rejected`, TRL's DPO dataset format
  (standard, not conversational), the persona inside the prompt.
- `ReleaseRecord` (pairs.release.jsonl): the public PERSONA release's column names.
"""

from __future__ import annotations

import msgspec


class CallTokens(msgspec.Struct, gc=False):
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    shared_by: int = 1  # pairs that share this call (the answer is shared per prompt)


class PairRecord(msgspec.Struct, gc=False):
    persona_id: str
    persona: str
    prompt_id: str
    prompt: str
    topic: str
    split: str
    rejected: str
    critique: str
    chosen: str
    answer_call: CallTokens
    critique_call: CallTokens
    revise_call: CallTokens
    cost_usd: float | None  # this pair's share; None when a model has no price


class DpoRecord(msgspec.Struct, gc=False):
    prompt: str
    chosen: str
    rejected: str


class ReleaseRecord(msgspec.Struct, gc=False):
    persona: str
    instruction: str
    original: str
    critique: str
    data: str
    question_type: str = msgspec.field(name="question type")
