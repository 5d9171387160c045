"""The run directory: where a run's queue, outputs and lock live."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from engine.errors import UserError

QUEUE_FILE = "queue.sqlite"
LOCK_FILE = ".lock"


CACHE_ENV = "PERSONA_TESTBED_CACHE"


def queue_path(run_dir: Path) -> Path:
    return run_dir / QUEUE_FILE


def default_cache_path() -> Path:
    """The response cache shared by every run of this user: $PERSONA_TESTBED_CACHE, else
    $XDG_CACHE_HOME/persona-testbed/cache.sqlite (~/.cache when XDG_CACHE_HOME is unset)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "persona-testbed" / "cache.sqlite"


class RunDirBusy(UserError):
    """Another process is running on this run directory."""


class RunDirLock:
    """An exclusive flock on the run directory: one owner at a time, released by the OS on
    any exit (a SIGKILLed owner leaves no stale lock)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        os.close(self._fd)


def lock_run_dir(run_dir: Path) -> RunDirLock:
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirBusy(f"{run_dir} is in use by another engine process") from None
    return RunDirLock(fd)
