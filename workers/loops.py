"""Running a command's coroutine on the fastest event loop available (entry points only)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (it is optional: not on Windows), else asyncio's."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main())


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[int], object]) -> Iterator[None]:
    """`handler(signum)` for every SIGINT and SIGTERM while inside, on the running loop."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, handler, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
