"""What a user can cause, as one hierarchy, and the exit status each one maps to.

    UserError                     exit 2: bad usage, bad input or bad settings; nothing enqueued
    ├── InputError                a file's content (names the file and, where it applies, line)
    ├── SettingsError             settings that cannot be used
    │   ├── SettingsChanged       a run directory started with other settings (PERSONA)
    │   └── SchemaVersionError    a queue written by a newer engine (engine.queue)
    ├── RunDirBusy                another engine process holds the run directory
    ├── PriceTableError           a price table that does not parse (engine.prices)
    ├── PromptFileError           a prompt file (engine.persona.prompts), by line
    └── PersonaDataError          census inputs that cannot become personas

Provider failures are not here: they are per job (workers.errors) and end as exit 3 when a job
fails for good. `exit_status_of` is the one place an error becomes an exit status.
"""

from __future__ import annotations

from pathlib import Path

from engine.exits import EXIT_USAGE


class UserError(Exception):
    """Something the user can fix: the message says what and where."""

    exit_status: int = EXIT_USAGE


class InputError(UserError):
    """Bad input: names the file and, where it applies, the line."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class SettingsError(UserError):
    """Settings that cannot be used: another run's directory, a bad configuration file."""


def exit_status_of(error: UserError) -> int:
    return error.exit_status
