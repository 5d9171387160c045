"""The Batch API mode's settings: one frozen Struct (defaults written once, flags in
engine.config's FLAGS table)."""

from __future__ import annotations

import msgspec

# the run's meta key of what batches paid: model -> [requests, prompt tokens, completion tokens]
# (here, not in engine.batch.runner, so `status` and `export` read it without the openai SDK)
USAGE_KEY = "batch.usage"


class BatchConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # OpenAI's limits of one input file
    max_requests: int = 50_000
    max_bytes: int = 200_000_000
    # the provider's per-tier cap on tokens held by open batches (None: no cap); and ours on
    # open batches: the engine waits for room rather than failing
    max_enqueued_tokens: int | None = None
    max_open: int = 8
    # each batch: first poll this long after it is submitted, then each wait x poll_backoff,
    # at most poll_max_s
    poll_s: float = 1.0
    poll_max_s: float = 60.0
    poll_backoff: float = 1.5
    cancel: bool = False  # cancel the run's open batches, keep what they delivered, stop
