"""Deterministic crash points for the crash tests: the process SIGKILLs itself at a named point.

`PERSONA_TESTBED_CRASH=point:N` (e.g. `after_append:3`) kills the process the N-th time it
reaches `point`. Points: `after_claim` (jobs leased, none called), `mid_append` (half of a
batch's output bytes written), `after_append` (a batch's lines written, not yet committed).
Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "PERSONA_TESTBED_CRASH"


class CrashPoints:
    def __init__(self, spec: str | None) -> None:
        self._remaining: dict[str, int] = {}
        if spec:
            name, _, count = spec.partition(":")
            self._remaining[name] = int(count or 1)

    @classmethod
    def from_env(cls) -> CrashPoints:
        return cls(os.environ.get(ENV))

    def reach(self, name: str) -> None:
        left = self._remaining.get(name)
        if left is None:
            return
        if left <= 1:
            os.kill(os.getpid(), signal.SIGKILL)
        self._remaining[name] = left - 1


NONE = CrashPoints(None)
