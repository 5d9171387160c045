"""The engine's exit statuses (the CLI contract), in a module with no imports so every entry
point can name them without loading the engine."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0  # every job done
EXIT_USAGE: Final = 2  # bad usage or bad input; nothing enqueued
EXIT_FAILED_JOBS: Final = 3  # finished, some jobs failed permanently
EXIT_INTERRUPTED: Final = 130  # stopped by a signal: rerun the same command to resume
