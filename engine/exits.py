"""The engine's exit statuses (the CLI contract), in a module with no imports so every entry
point can name them without loading the engine."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0  # every job done
EXIT_USAGE: Final = 2  # bad usage or bad input; nothing enqueued
EXIT_FAILED_JOBS: Final = 3  # finished, some jobs failed permanently
# stopped: every call of a stage and model was rejected the same way (a wrong key, a mistyped
# model); those jobs went back to the queue, nothing was marked failed (issue 16)
EXIT_SYSTEMATIC: Final = 4
# stopped: the run directory or the cache is full or not writable (ENOSPC, EDQUOT, EROFS);
# nothing torn, the same command resumes once there is space (issue 16)
EXIT_STORAGE: Final = 5
EXIT_INTERRUPTED: Final = 130  # stopped by a signal: rerun the same command to resume
