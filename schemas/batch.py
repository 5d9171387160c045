"""OpenAI Batch API input and output lines, the engine's file contract.

Input:  {"custom_id", "method", "url", "body"}
Output: {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}
plus an optional "engine" object with our per-job accounting (extra keys are ignored
by tools that read Batch API output).
"""

from __future__ import annotations

from typing import Any

import msgspec

#: The endpoints the engine knows how to call.
SUPPORTED_URLS = frozenset({"/v1/chat/completions"})


class BatchInputLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    custom_id: str
    body: dict[str, Any]
    method: str = "POST"
    url: str = "/v1/chat/completions"


class BatchResponse(msgspec.Struct, gc=False):
    status_code: int
    request_id: str
    body: msgspec.Raw


class BatchError(msgspec.Struct, gc=False):
    code: str
    message: str


class EngineMeta(msgspec.Struct, omit_defaults=True, gc=False):
    """Our accounting for one job; outside the Batch API shape, under the key "engine"."""

    attempts: int
    latency_ms: float | None = None  # the successful call alone
    elapsed_ms: float | None = None  # first attempt's start to finish (queueing and retries)
    finished_at: float | None = None  # epoch seconds
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    cost_usd: float | None = None  # from the price table; 0 when cached; None: no price


class BatchOutputLine(msgspec.Struct, gc=False):
    id: str
    custom_id: str
    response: BatchResponse | None
    error: BatchError | None
    engine: EngineMeta | None = None


batch_input_decoder = msgspec.json.Decoder(BatchInputLine)
batch_output_decoder = msgspec.json.Decoder(BatchOutputLine)
encoder = msgspec.json.Encoder()
