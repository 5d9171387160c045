"""Run one transport call under its adaptive deadline (see workers/deadline.py).

    call_within_deadline(deadlines, key, call):
        the call is registered as in flight (its task, key and start time)
        one timer for all calls, every tenth of the floor: a call past its key's deadline
            (read then, so calls begun before the key had samples are caught too)
            → its task is cancelled, and the cancellation becomes CallAbandoned (retryable)
        the call completes → unregistered; its latency joins the key's window

Per call this costs a dict insert and delete; the sweep is one timer for the whole process, not
one per call (a timer, a cancel scope and a heap entry per call cost about a quarter of the
engine's CPU on the PERSONA run). A call is abandoned within a tenth of the floor after its
deadline (1 s at the default 10 s floor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from weakref import WeakKeyDictionary

from workers.client import CallResult
from workers.deadline import Deadlines, Key
from workers.errors import CallAbandoned


class _Call:
    __slots__ = ("abandoned", "key", "started")

    def __init__(self, key: Key, started: float) -> None:
        self.key = key
        self.started = started
        self.abandoned = False


class _Watcher:
    """The calls in flight under one `Deadlines`, and the one timer that sweeps them."""

    def __init__(self, deadlines: Deadlines, loop: asyncio.AbstractEventLoop) -> None:
        self._deadlines = deadlines
        self._loop = loop
        self._period = deadlines.recheck_s() / 10
        self._calls: dict[asyncio.Task[Any], _Call] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task[Any], key: Key) -> _Call:
        call = self._calls[task] = _Call(key, self._loop.time())
        if self._handle is None:
            self._handle = self._loop.call_later(self._period, self._sweep)
        return call

    def remove(self, task: asyncio.Task[Any]) -> None:
        del self._calls[task]

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        for task, call in self._calls.items():  # cancel() only schedules: no change here
            if call.abandoned:
                continue
            deadline = self._deadlines.deadline_s(call.key)
            if deadline is not None and now - call.started >= deadline:
                call.abandoned = True
                task.cancel()
        if self._calls:
            self._handle = self._loop.call_later(self._period, self._sweep)


_watchers: WeakKeyDictionary[Deadlines, _Watcher] = WeakKeyDictionary()


def _watcher(deadlines: Deadlines) -> _Watcher:
    watcher = _watchers.get(deadlines)
    loop = asyncio.get_running_loop()
    if watcher is None or watcher._loop is not loop:
        watcher = _watchers[deadlines] = _Watcher(deadlines, loop)
    return watcher


async def call_within_deadline(
    deadlines: Deadlines | None, key: Key, call: Callable[[], Awaitable[CallResult]]
) -> CallResult:
    """`call()`, abandoned with `CallAbandoned` (retryable) once past the key's deadline."""
    if deadlines is None:
        return await call()
    task = asyncio.current_task()
    assert task is not None
    watcher = _watcher(deadlines)
    entry = watcher.add(task, key)
    try:
        result = await call()
    except asyncio.CancelledError:
        # ours alone: abandoned; cancelled by someone else as well: a real cancellation
        if entry.abandoned and task.uncancel() == 0:
            elapsed = asyncio.get_running_loop().time() - entry.started
            raise CallAbandoned(
                f"abandoned after {elapsed:.1f} s: beyond the adaptive deadline of calls like it"
            ) from None
        raise
    finally:
        watcher.remove(task)
    deadlines.observe(key, result.latency_ms / 1000.0)
    return result
