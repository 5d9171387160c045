"""Adaptive deadlines: how long a call may run before it is abandoned and retried (pure).

A call is compared with calls like it: the same model and the same `max_tokens` bucket (powers
of two, so 700 and 1,000 tokens share one). Per key, the latencies of the last `window`
successful calls are kept in a ring buffer, and

    deadline(key) = max(floor_s, p99_mult * p99(latencies of key))

once at least `min_samples` of them exist (None before: then only the floor applies, see
`Deadlines.check_after_s`). The floor protects long generations whose key has few samples or
fast neighbours; the multiple covers the tail of a lognormal latency (for sigma 0.8, 4 x p99 is
exceeded by about 1 call in 40,000). `--timeout-s` stays the hard cap on every call.

The p99 is recomputed every `recompute_every` samples (a sort of at most `window` floats), not
on every call.
"""

from __future__ import annotations

import math

import msgspec


class DeadlineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    floor_s: float = 10.0  # never abandon a call sooner than this
    p99_mult: float = 4.0  # abandon beyond this multiple of the key's observed p99
    min_samples: int = 50  # successful calls of a key before its p99 is trusted
    window: int = 512  # the most recent successful calls kept per key
    recompute_every: int = 16


#: while a key's deadline is unknown, its calls are looked at again at least this far apart
MIN_RECHECK_S = 0.1

#: (model, max_tokens bucket)
Key = tuple[str, int]


class _Caps(msgspec.Struct, gc=False):
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


_caps_decoder = msgspec.json.Decoder(_Caps)


def tokens_bucket(max_tokens: int | None) -> int:
    """0 for no cap; otherwise the smallest power of two >= `max_tokens`."""
    if max_tokens is None or max_tokens < 1:
        return 0
    return 1 << math.ceil(math.log2(max_tokens))


def key_of(model: str, payload: bytes) -> Key:
    """The key of a request body (a body that cannot be read falls in bucket 0)."""
    try:
        caps = _caps_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return (model, 0)
    return (model, tokens_bucket(caps.max_completion_tokens or caps.max_tokens))


def quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile of a non-empty sorted list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class LatencyWindow:
    """The last `size` latencies of one key, and their p99 (recomputed every few samples)."""

    __slots__ = ("_count", "_every", "_p99", "_size", "_values")

    def __init__(self, size: int, recompute_every: int) -> None:
        self._size = size
        self._every = max(1, recompute_every)
        self._values: list[float] = []
        self._count = 0
        self._p99: float | None = None

    def __len__(self) -> int:
        return len(self._values)

    def add(self, latency_s: float) -> None:
        if len(self._values) < self._size:
            self._values.append(latency_s)
        else:
            self._values[self._count % self._size] = latency_s
        self._count += 1
        if self._count % self._every == 0:
            self._p99 = None

    def p99(self) -> float:
        if self._p99 is None:
            self._p99 = quantile(sorted(self._values), 0.99)
        return self._p99


class Deadlines:
    """Per-key latency windows and the deadline they give."""

    def __init__(self, config: DeadlineConfig) -> None:
        self.config = config
        self._windows: dict[Key, LatencyWindow] = {}

    def observe(self, key: Key, latency_s: float) -> None:
        """Record the latency of a call of `key` that completed."""
        window = self._windows.get(key)
        if window is None:
            config = self.config
            window = self._windows[key] = LatencyWindow(config.window, config.recompute_every)
        window.add(latency_s)

    def deadline_s(self, key: Key) -> float | None:
        """How long a call of `key` may run; None while fewer than `min_samples` exist."""
        window = self._windows.get(key)
        if window is None or len(window) < self.config.min_samples:
            return None
        return max(self.config.floor_s, self.config.p99_mult * window.p99())

    def check_after_s(self, key: Key) -> float:
        """When (after its start) to look at a call of `key` again: its deadline, or the floor
        while the deadline is unknown (samples may have arrived by then)."""
        deadline = self.deadline_s(key)
        return self.recheck_s() if deadline is None else deadline

    def recheck_s(self) -> float:
        """How long to wait before looking again at a call whose key has no deadline yet."""
        return max(self.config.floor_s, MIN_RECHECK_S)


def deadlines_of(config: DeadlineConfig) -> Deadlines | None:
    """The tracker for a run, or None when adaptive deadlines are off."""
    return Deadlines(config) if config.enabled else None
