"""Workers wait for their outcome's commit before taking the next job.

A reply that has arrived but is not yet committed dies with the process on SIGKILL, and the
rerun pays for that call again. If a worker could go on calling while its last outcome waited
behind the writer's current commit, the paid-but-uncommitted calls would grow with the commit
time (measured before this: 130-149 calls re-paid after two kills at concurrency 64). With
each worker holding its slot until the writer has committed its outcome, there are never more
paid-but-uncommitted calls than workers: at most `--concurrency` calls are paid twice per
kill (in flight or answered but uncommitted, together).

The writer still commits everything that is waiting as soon as its previous commit ends
(group commit), so the wait is one commit at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class CommitWaits:
    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def expect(self, seq: int) -> asyncio.Future[None]:
        """A future that is done once the outcome of job `seq` has been committed."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future
        return future

    def committed(self, seqs: Iterable[int]) -> None:
        """The outcomes of these jobs are committed: wake their workers."""
        for seq in seqs:
            future = self._waiting.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(None)
