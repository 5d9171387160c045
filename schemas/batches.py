"""The queue's record of Batch API batches (engine.batch): what was sent, under which ids.

A batch's life, each step recorded in the queue before the next one relies on it:

    PREPARED   members chosen (their jobs RUNNING, claimable by nothing else); nothing sent
    UPLOADED   the input file's id is known; the batch may or may not exist at the provider
               (a crash right after POST /v1/batches): found again by its input file id
    SUBMITTED  the batch id is known: poll it, whatever happens to this process
    CLOSED     its outcomes committed (in the same transaction); its jobs are free again
"""

from __future__ import annotations

import enum

import msgspec


class BatchState(enum.StrEnum):
    PREPARED = "prepared"
    UPLOADED = "uploaded"
    SUBMITTED = "submitted"
    CLOSED = "closed"


class BatchRow(msgspec.Struct, kw_only=True):
    key: str  # ours, unique in the run ("b000001"): the input file's name and batch metadata
    state: BatchState
    requests: int
    bytes: int
    est_tokens: int  # what it holds of the enqueued-token budget while open
    created_at: float
    wave: int = 0
    input_file_id: str | None = None
    batch_id: str | None = None
    submitted_at: float | None = None
    closed_at: float | None = None
    provider_status: str | None = None  # the last status the provider reported
    completed: int = 0  # lines answered (from the provider's request_counts, then settled)
    failed: int = 0


class BatchMember(msgspec.Struct, frozen=True, gc=False):
    """A job in a batch: its line's custom_id and its request's fingerprint (a child's request
    was built when it was claimed; the fingerprint is what the cache needs when it is done)."""

    seq: int
    custom_id: str
    fingerprint: str


batch_row_encoder = msgspec.json.Encoder()
batch_row_decoder = msgspec.json.Decoder(BatchRow)
