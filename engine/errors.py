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
    StorageError                  exit 5: the run directory or cache is full or not writable

Provider failures are not here: they are per job (workers.errors) and end as exit 3 when a job
fails for good. `exit_status_of` is the one place an error becomes an exit status.
"""

from __future__ import annotations

import errno
from pathlib import Path

from engine.exits import EXIT_STORAGE, EXIT_USAGE


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


#: errnos that mean "this filesystem takes no more writes": full, over quota, read-only, or
#: not ours to write (a run directory the user cannot write to)
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES})
_WHAT = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large",
    errno.EACCES: "permission denied",
}


class StorageError(UserError):
    """A write the filesystem refused (issue 16): full, over quota, read-only.

    Raised instead of the OSError (or the SQLite "database or disk is full") wherever the
    engine writes, so the run stops with one line naming the path and the fix. Nothing is
    torn: the queue's transaction rolled back and the output files are cut back to their
    committed size, so the same command resumes once there is space.
    """

    exit_status = EXIT_STORAGE

    def __init__(self, path: Path, code: int | None) -> None:
        self.path = path
        self.code = code
        what = _WHAT.get(code or errno.ENOSPC, "write refused")
        if code in (errno.EROFS, errno.EACCES):
            fix = "make it writable (or give --run-dir / --cache elsewhere)"
        else:
            fix = "free some space there (or give --run-dir / --cache elsewhere)"
        super().__init__(
            f"stopped: {what} writing {path}: {fix}, then run the same command: it resumes "
            "where it stopped, nothing is lost"
        )


def storage_error_of(exc: OSError, path: Path) -> StorageError | None:
    """The StorageError an OSError means (None: some other failure). `path` names the file
    when the OSError does not (os.write never does)."""
    if exc.errno not in STORAGE_ERRNOS:
        return None
    return StorageError(Path(exc.filename) if exc.filename else path, exc.errno)
