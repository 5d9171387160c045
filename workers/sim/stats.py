"""The simulator's counters (what `GET /stats` returns), kept as plain in-memory integers."""

from __future__ import annotations

import msgspec


class SimStats(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A snapshot of the counters; `by_status` and `by_stage` have string keys (JSON)."""

    requests_received: int  # POST /v1/chat/completions requests, whatever their outcome
    completions_served: int  # 200 responses carrying a valid completion
    unique_completions: int  # distinct request bodies (fingerprints) among those
    duplicate_completions: int  # completions_served - unique_completions
    by_status: dict[str, int]  # completion requests by HTTP status, e.g. {"200": 9, "429": 1}
    prompt_tokens: int  # summed over valid completions
    completion_tokens: int  # summed over valid completions
    by_stage: dict[str, int]  # valid completions by the X-Engine-Stage request header
    in_flight: int  # completion requests being handled now
    # the Batch API (workers.sim.batches): batches created, lines received in them (a
    # custom_id submitted again counts again), lines answered 200, and resubmissions
    batches_created: int = 0
    batch_lines_received: int = 0
    batch_lines_served: int = 0
    batch_lines_resubmitted: int = 0  # sum over custom_ids of (times submitted - 1)
    batch_max_submissions: int = 0  # the most times any one custom_id was submitted
    batch_max_open: int = 0  # the most batches open at once


class SimCounters:
    """Mutable counters, updated on the event loop only (no locking needed)."""

    __slots__ = (
        "by_stage",
        "by_status",
        "completion_tokens",
        "completions_served",
        "fingerprints",
        "in_flight",
        "prompt_tokens",
        "requests_received",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self._zero()

    def reset(self) -> None:
        """Zero everything except `in_flight`, which counts requests still being handled."""
        self._zero()

    def _zero(self) -> None:
        self.requests_received = 0
        self.completions_served = 0
        self.fingerprints: set[bytes] = set()
        self.by_status: dict[int, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.by_stage: dict[str, int] = {}

    def count_status(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def count_completion(
        self, fp: bytes, prompt_tokens: int, completion_tokens: int, stage: str | None
    ) -> None:
        self.completions_served += 1
        self.fingerprints.add(fp)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if stage is not None:
            self.by_stage[stage] = self.by_stage.get(stage, 0) + 1

    def snapshot(self) -> SimStats:
        unique = len(self.fingerprints)
        return SimStats(
            requests_received=self.requests_received,
            completions_served=self.completions_served,
            unique_completions=unique,
            duplicate_completions=self.completions_served - unique,
            by_status={str(code): n for code, n in sorted(self.by_status.items())},
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            by_stage=dict(sorted(self.by_stage.items())),
            in_flight=self.in_flight,
        )
