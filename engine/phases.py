"""The phases of a run the user waits through besides the calls: enqueueing the job graph and
exporting the outputs. Each is said when it starts and ends (with its duration): a spinner line
on a terminal, `phase.started` / `phase.finished` log events otherwise."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import structlog
from rich.console import Console

log = structlog.get_logger()

_SAID = {"enqueue": "enqueueing the jobs", "run": "running", "export": "exporting"}


@contextlib.contextmanager
def phase(name: str, interactive: bool) -> Iterator[None]:
    start = time.perf_counter()
    log.info("phase.started", phase=name)
    status = (
        Console(stderr=True).status(f"{_SAID.get(name, name)}…")
        if interactive
        else contextlib.nullcontext()
    )
    with status:
        yield
    log.info("phase.finished", phase=name, elapsed_s=round(time.perf_counter() - start, 3))
