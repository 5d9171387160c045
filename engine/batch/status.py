"""What `status` shows of a Batch API run: the open batches (request counts, ages) and the
cost of the calls made through batches, beside what they would have cost online."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from engine.batch.config import USAGE_KEY
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.batches import BatchState

_usage_decoder = msgspec.json.Decoder(dict[str, list[int]])


class OpenBatch(msgspec.Struct):
    key: str
    batch_id: str | None
    state: str  # ours: prepared, uploaded, submitted
    provider_status: str | None
    requests: int
    completed: int
    failed: int
    age_s: float


class BatchSummary(msgspec.Struct):
    batches: int  # ever opened in this run
    waves: int
    open: list[OpenBatch]
    requests: int  # answered through batches (paid)
    cost_usd: float | None  # at the Batch API's price; None when a model has no price
    online_equivalent_usd: float | None  # the same tokens at the online price


async def batch_summary(
    queue: WorkQueue, prices: Mapping[str, Price], now: float
) -> BatchSummary | None:
    """None for a run that never used the Batch API."""
    rows = await queue.batches(include_closed=True)
    if not rows:
        return None
    usage = _usage_decoder.decode((await queue.get_meta(USAGE_KEY)) or "{}")
    cost: float | None = 0.0
    online: float | None = 0.0
    for model, (_, prompt, completion) in usage.items():
        price = prices.get(model)
        if price is None or cost is None or online is None:
            cost = online = None
            continue
        online += price.cost(prompt, completion)
        cost += price.cost(prompt, completion) * price.batch_share
    return BatchSummary(
        batches=len(rows),
        waves=max(r.wave for r in rows),
        open=[
            OpenBatch(
                r.key,
                r.batch_id,
                r.state.value,
                r.provider_status,
                r.requests,
                r.completed,
                r.failed,
                round(now - r.created_at, 1),
            )
            for r in rows
            if r.state is not BatchState.CLOSED
        ],
        requests=sum(u[0] for u in usage.values()),
        cost_usd=None if cost is None else round(cost, 6),
        online_equivalent_usd=None if online is None else round(online, 6),
    )


def render_batches(summary: BatchSummary) -> list[str]:
    lines = [
        f"  Batch API: {summary.batches} batches in {summary.waves} waves, {len(summary.open)} open"
    ]
    for b in summary.open:
        lines.append(
            f"    {b.key} {b.batch_id or '-'} {b.provider_status or b.state}: {b.requests} "
            f"requests ({b.completed} completed, {b.failed} failed), age {b.age_s:.0f} s"
        )
    if summary.cost_usd is not None and summary.online_equivalent_usd is not None:
        lines.append(
            f"    {summary.requests} calls through batches: ${summary.cost_usd:.4f} "
            f"(online-equivalent ${summary.online_equivalent_usd:.4f})"
        )
    return lines
