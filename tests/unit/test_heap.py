"""The mmap threshold fixed at start-up (engine.heap), in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = "from engine.heap import fix_mmap_threshold; print(fix_mmap_threshold())"


def _probe(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_threshold_is_set_unless_the_user_set_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    assert _probe(env) == "True"
    assert _probe({**env, "MALLOC_MMAP_THRESHOLD_": "65536"}) == "False"
