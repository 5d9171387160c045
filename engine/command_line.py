"""The command line this process was started with, so a run can say how to run it again.

`engine.cli.main` records it; `generate` stores it in the run's meta (`COMMAND_KEY`) and
`status` prints it with `--retry-failed` when there are failed jobs. URL credentials are
dropped (keys are never on the command line: they come from the environment).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

COMMAND_KEY = "run.command"
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
_recorded: list[list[str]] = []  # the argv `main` was given (empty: not started by main)


def record(argv: Sequence[str]) -> None:
    _recorded[:] = [list(argv)]


def rerun_command() -> str | None:
    """`python -m engine …` as started, without --retry-failed (None: not started by main)."""
    if not _recorded:
        return None
    kept: list[str] = []
    skip_value = False
    for arg in _recorded[0]:
        if skip_value:
            skip_value = False
            if not arg.startswith("-"):
                continue
        if arg == "--retry-failed":
            skip_value = True
            continue
        if arg.startswith("--retry-failed="):
            continue
        kept.append(_USERINFO.sub("", arg))
    return shlex.join(["python", "-m", "engine", *kept])
