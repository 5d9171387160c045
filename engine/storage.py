"""Storage that runs out (issue 16): the free-space check before a run, and turning whatever a
full or read-only filesystem raised into the one `StorageError` the CLI reports (exit 5).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import StorageError, storage_error_of

# What the PERSONA run writes per call (queue, output files, pairs; and the cache): 982 and 349
# bytes on the full default run with compressed bodies and Parquet pairs (635,577 calls: 624 MB
# run directory, 222 MB cache, measured 2026-12-01 on the simulator's replies; before them 5,820
# and 865). Real replies compress less than the simulator's: rounded up.
PERSONA_RUN_DIR_BYTES_PER_CALL = 1_500
PERSONA_CACHE_BYTES_PER_CALL = 500


def storage_error_in(exc: BaseException, run_dir: Path) -> StorageError | None:
    """The StorageError behind `exc` (itself, an OSError it means, or one inside an
    ExceptionGroup from the coordinator's tasks), or None."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError):
        return storage_error_of(exc, run_dir)
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = storage_error_in(inner, run_dir)
            if found is not None:
                return found
    return None


def free_bytes(path: Path) -> int | None:
    """Free bytes (for this user) on the filesystem of `path` or its nearest existing parent."""
    for candidate in (path, *path.parents):
        try:
            stat = os.statvfs(candidate)
        except OSError:
            continue
        return stat.f_bavail * stat.f_frsize
    return None


def _device(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return os.stat(candidate).st_dev
        except OSError:
            continue
    return None


def space_warning(
    pipeline: str, calls_left: int, run_dir: Path, cache_path: Path | None
) -> str | None:
    """A warning when the run will write more than there is room for (None: room enough, or
    a run whose size is not known: only the PERSONA run's is measured)."""
    if pipeline != "persona" or calls_left <= 0:
        return None
    needs: dict[Path, int] = {run_dir: calls_left * PERSONA_RUN_DIR_BYTES_PER_CALL}
    if cache_path is not None:
        cache_needs = calls_left * PERSONA_CACHE_BYTES_PER_CALL
        if _device(cache_path.parent) == _device(run_dir):
            needs[run_dir] += cache_needs
        else:
            needs[cache_path.parent] = cache_needs
    for where, need in needs.items():
        free = free_bytes(where)
        if free is not None and free < need:
            return (
                f"warning: this run will write about {_size(need)} to {where} ({calls_left} "
                f"calls left) but {_size(free)} is free there; when it is full the run stops "
                "(exit 5) and the same command resumes once there is space"
            )
    return None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
