"""Calls abandoned by the adaptive deadline: counted durably, shown by `status` and the summary.

An abandoned call may still be finished and billed by the provider while its retry is paid
again, so the count is a paid-twice risk worth seeing. The writer adds the batch's abandoned
calls (Retry or Failed outcomes whose error kind is `CallAbandoned`) to a counter in the queue's
meta table, committed in the same transaction as the outcomes: it survives a crash or a
restart and never counts an outcome that was not committed.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.queue import WorkQueue
from schemas.job import Failed, Outcome, Retry
from workers.errors import CallAbandoned

META_KEY = "abandoned_calls"
_KIND = CallAbandoned.__name__


def abandoned_in(batch: Iterable[Outcome]) -> int:
    """How many outcomes of `batch` are abandoned calls."""
    return sum(1 for o in batch if isinstance(o, Retry | Failed) and o.error.kind == _KIND)


async def abandoned_calls(queue: WorkQueue) -> int:
    """The committed count of abandoned calls of the run in `queue`."""
    value = await queue.get_meta(META_KEY)
    return int(value) if value else 0


class AbandonedCounter:
    """The run's count: what earlier processes committed plus what this one commits."""

    def __init__(self, before: int = 0) -> None:
        self.before = before
        self.this_run = 0

    @property
    def total(self) -> int:
        return self.before + self.this_run

    def meta_for(self, batch: Iterable[Outcome]) -> dict[str, str]:
        """The meta value to commit with `batch` (empty when it holds no abandoned call).
        Call once per commit, just before it."""
        count = abandoned_in(batch)
        if not count:
            return {}
        self.this_run += count
        return {META_KEY: str(self.total)}


def abandoned_line(count: int) -> str:
    return (
        f"{count} calls abandoned past their adaptive deadline and retried "
        "(each may have been paid twice)"
    )
