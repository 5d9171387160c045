"""Server-side rate limits of the simulator: a requests bucket and a tokens bucket.

Each limit is a token bucket whose capacity is one second's worth of the per-minute limit
(`limit / 60`, at least 1), refilled continuously at `limit / 60` per second on the clock the
caller passes (the event loop's monotonic `loop.time()`). Buckets start full, so a burst is
at most one second's worth and over any window of T seconds at most (T + 1) * limit / 60
units are admitted: the long-run rate never exceeds the limit.

A request is admitted when the requests bucket holds 1 and the tokens bucket holds its cost
(prompt tokens + the most completion tokens it may get, like OpenAI). A cost larger than the
tokens bucket's capacity is admitted once the bucket is full and leaves it in debt, so an
oversized request is slowed down, never refused forever.

Nothing here does I/O: `admit` and `headers` take the time and return data.
"""

from __future__ import annotations

import math


class TokenBucket:
    """One per-minute limit as a bucket of `max(1, limit/60)` units, `limit/60` per second."""

    __slots__ = ("capacity", "level", "limit_per_min", "rate_per_s", "stamp_s")

    def __init__(self, limit_per_min: int, now_s: float) -> None:
        self.limit_per_min = limit_per_min
        self.rate_per_s = limit_per_min / 60.0
        self.capacity = max(1.0, self.rate_per_s)
        self.level = self.capacity
        self.stamp_s = now_s

    def refill(self, now_s: float) -> None:
        elapsed_s = now_s - self.stamp_s
        if elapsed_s > 0:
            self.level = min(self.capacity, self.level + elapsed_s * self.rate_per_s)
            self.stamp_s = now_s

    def wait_s(self, cost: float) -> float:
        """Seconds until `cost` can be taken (0.0 when it can be taken now); refill first."""
        needed = min(cost, self.capacity)
        if self.level >= needed:
            return 0.0
        return (needed - self.level) / self.rate_per_s

    def take(self, cost: float) -> None:
        self.level -= cost

    def remaining(self) -> int:
        return max(0, math.floor(self.level))

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.rate_per_s)


def format_duration(seconds: float) -> str:
    """OpenAI's style for `x-ratelimit-reset-*`: "120ms", "1.5s", "6m0s"."""
    if seconds < 1.0:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60.0:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}m{round(rest, 3):g}s"


class SimRateLimiter:
    """The requests-per-minute and tokens-per-minute limits of one simulator."""

    __slots__ = ("requests", "tokens")

    def __init__(self, rpm: int | None, tpm: int | None, now_s: float) -> None:
        self.requests = TokenBucket(rpm, now_s) if rpm is not None else None
        self.tokens = TokenBucket(tpm, now_s) if tpm is not None else None

    @property
    def enabled(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def admit(self, cost_tokens: int, now_s: float) -> float:
        """Take one request and `cost_tokens` when both fit: return 0.0; else the wait in s."""
        wait_s = 0.0
        if self.requests is not None:
            self.requests.refill(now_s)
            wait_s = self.requests.wait_s(1.0)
        if self.tokens is not None:
            self.tokens.refill(now_s)
            wait_s = max(wait_s, self.tokens.wait_s(cost_tokens))
        if wait_s > 0.0:
            return wait_s
        if self.requests is not None:
            self.requests.take(1.0)
        if self.tokens is not None:
            self.tokens.take(cost_tokens)
        return 0.0

    def headers(self) -> dict[str, str]:
        """The `x-ratelimit-*` headers for the state left by the last `admit`."""
        headers: dict[str, str] = {}
        for suffix, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                headers[f"x-ratelimit-limit-{suffix}"] = str(bucket.limit_per_min)
                headers[f"x-ratelimit-remaining-{suffix}"] = str(bucket.remaining())
                headers[f"x-ratelimit-reset-{suffix}"] = format_duration(bucket.reset_s())
        return headers


def retry_after_headers(wait_s: float) -> dict[str, str]:
    """`retry-after` (whole seconds, rounded up, at least 1) and `retry-after-ms`."""
    return {
        "retry-after": str(max(1, math.ceil(wait_s))),
        "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
    }
