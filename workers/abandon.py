"""Run one transport call under its adaptive deadline (see workers/deadline.py).

    call_within_deadline(deadlines, key, call):
        start a timer at (deadline of key, or the floor while it is unknown)
        timer fires: past the key's deadline now?  → cancel the call: CallAbandoned
                     not yet (or still unknown)   → look again at the deadline (or a floor later)
        the call completes                         → its latency joins the key's window

One `loop.call_at` timer per call in flight, re-armed at most a few times; no polling.
The deadline is read when the timer fires, not when the call starts, so calls that began
before the key had enough samples are still abandoned once it has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from workers.client import CallResult
from workers.deadline import Deadlines, Key
from workers.errors import CallAbandoned


class _Watch:
    """The timer of one call: expires `timeout` once the call is past its key's deadline."""

    __slots__ = ("_deadlines", "_handle", "_key", "_loop", "_timeout", "started")

    def __init__(
        self,
        deadlines: Deadlines,
        key: Key,
        timeout: asyncio.Timeout,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._deadlines = deadlines
        self._key = key
        self._timeout = timeout
        self._loop = loop
        self.started = loop.time()
        first = self.started + deadlines.check_after_s(key)
        self._handle = loop.call_at(first, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        deadline = self._deadlines.deadline_s(self._key)
        if deadline is None:
            self._handle = self._loop.call_at(now + self._deadlines.recheck_s(), self._check)
        elif now >= self.started + deadline:
            self._timeout.reschedule(now)  # expires at once: the call is cancelled
        else:
            self._handle = self._loop.call_at(self.started + deadline, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


async def call_within_deadline(
    deadlines: Deadlines | None, key: Key, call: Callable[[], Awaitable[CallResult]]
) -> CallResult:
    """`call()`, abandoned with `CallAbandoned` (retryable) once past the key's deadline."""
    if deadlines is None:
        return await call()
    loop = asyncio.get_running_loop()
    timeout = asyncio.timeout(None)
    try:
        async with timeout:
            watch = _Watch(deadlines, key, timeout, loop)
            try:
                result = await call()
            finally:
                watch.cancel()
    except TimeoutError:
        if not timeout.expired():
            raise
        elapsed = loop.time() - watch.started
        raise CallAbandoned(
            f"abandoned after {elapsed:.1f} s: beyond the adaptive deadline of calls like it"
        ) from None
    deadlines.observe(key, result.latency_ms / 1000.0)
    return result
