"""The clock every time-dependent part of `ratelimits` takes: read the time, schedule one callback.

Two operations are all a limiter or a breaker needs (aiolimiter's design): `now()` on a
monotonic clock, and `call_at(when, callback)` to be woken once, exactly when something can
happen. No polling, no sleeping in a loop.

`LoopClock` is the running event loop's clock (`loop.time()`, `loop.call_at`), so timers are
ordinary loop timers. `FakeClock` is for tests: time stands still until the test calls
`advance(dt)`, which runs the due callbacks in order, each at its own instant.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """What `call_at` returns: a callback that can be cancelled (asyncio's handle fits)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds and one-shot timers on the same time base."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


class LoopClock:
    """The running event loop's monotonic clock; callbacks run as loop timers.

    Built inside a running loop, it is that loop's (looking the loop up costs more than
    reading its time: 3 % of the engine's samples on the PERSONA run, issue 11). Built before
    any loop runs, it looks the running loop up on each call, so the futures that waiters
    create belong to the loop that is running them.
    """

    def __init__(self) -> None:
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        return (self._loop or asyncio.get_running_loop()).call_at(when, callback)


class FakeTimer:
    """A timer of `FakeClock`; `cancel()` keeps it from running."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to: `advance(dt)` / `advance_to(t)`.

    Due callbacks run synchronously inside `advance`, earliest first (ties in scheduling
    order), and `now()` reads each callback's own deadline while it runs. Callbacks scheduled
    by a callback for a time inside the advanced span run in the same call. Tasks woken by
    those callbacks run when the test next yields to the event loop.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()
        self.timers_scheduled = 0

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        self.timers_scheduled += 1
        return timer

    @property
    def pending(self) -> int:
        """Timers scheduled and neither run nor cancelled."""
        return sum(1 for _, _, timer in self._heap if not timer.cancelled)

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, or None if there is none."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def advance(self, dt: float) -> int:
        """Move time forward by `dt` seconds, running due callbacks; returns how many ran."""
        if dt < 0:
            raise ValueError(f"time cannot go backwards (dt={dt})")
        return self.advance_to(self._now + dt)

    def advance_to(self, when: float) -> int:
        """Move time forward to `when` (never backwards), running due callbacks in order."""
        ran = 0
        while self._heap and self._heap[0][0] <= when:
            deadline, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, deadline)
            timer.callback()
            ran += 1
        self._now = max(self._now, when)
        return ran
