"""Large allocations straight from the OS, so the process gives them back when it frees them.

glibc's malloc serves an allocation of `M_MMAP_THRESHOLD` bytes or more with its own `mmap`,
unmapped on free. The threshold starts at 128 KiB but rises to the size of each such block
freed (up to 32 MiB), so after the first few, the large buffers of an export (a chunk's Arrow
columns and compressed pages) come from the heap arenas instead, where
the gaps they leave keep the memory resident. Fixing the threshold at 1 MiB measured, on the
README's first command (2026-12-07, this 2-core machine): peak RSS 184 MiB against 215 MiB,
the run loop 112 MB against 118 MB, wall 1:53 against 1:53 (the export alone: 182 MB against
209 MB peak, 0.5-1.2 s slower of 14 s). Not glibc (musl, macOS): nothing to do.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
THRESHOLD_BYTES = 1 << 20


def fix_mmap_threshold(threshold: int = THRESHOLD_BYTES) -> bool:
    """Set glibc's mmap threshold (which also stops it moving); False where there is no glibc.
    An explicit `MALLOC_MMAP_THRESHOLD_` in the environment is left as the user set it."""
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the interpreter's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
