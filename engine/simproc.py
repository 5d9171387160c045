"""Start the built-in simulator as a child process on a free loopback port.

A separate process, so that it uses the other core instead of competing with the engine's
event loop. It exits when its parent dies (even by SIGKILL): see `watch_parent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence

_PREFIX = "simulator listening on "


class SimulatorStartError(Exception):
    pass


@contextlib.asynccontextmanager
async def local_simulator(args: Sequence[str] = ()) -> AsyncIterator[str]:
    """Yield the base URL (".../v1") of a fresh simulator; stop it afterwards."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "simulate",
        "--port",
        "0",
        "--parent-pid",
        str(os.getpid()),
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30.0)).decode().strip()
        if not line.startswith(_PREFIX):
            raise SimulatorStartError(f"simulator did not start (said {line!r})")
        yield line.removeprefix(_PREFIX)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def watch_parent(parent_pid: int, every_s: float = 0.5) -> None:
    """Send ourselves SIGTERM when `parent_pid` is no longer our parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
