"""Retry delays as pure functions: exponential backoff with jitter, and the server's Retry-After.

Jitter is one number, the fraction of the delay that is random:

- `jitter=1.0` is *full jitter*: uniform in ``[0, ceiling]``. Spreads retries best (AWS
  Architecture Blog, "Exponential Backoff and Jitter"); the default for job retries.
- `jitter=0.5` is *equal jitter*: ``ceiling/2`` plus uniform in ``[0, ceiling/2]``. Never
  retries almost immediately.
- `jitter=0.0` is plain exponential backoff, deterministic.

where ``ceiling = min(max_s, base_s * 2 ** (attempt - 1))`` and `attempt` counts retries from 1.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from collections.abc import Mapping

# 2.0 ** 1000 is still a finite float; past it the ceiling is max_s anyway.
_MAX_EXPONENT = 1000


def exponential_backoff(
    attempt: int, base_s: float, max_s: float, jitter: float, rng: random.Random
) -> float:
    """Delay in seconds before retry number `attempt` (1 = first retry), in ``[0, max_s]``.

    The deterministic part is ``ceiling * (1 - jitter)``, the random part uniform in
    ``[0, ceiling * jitter]`` (see the module docstring for full and equal jitter).
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter is a fraction in [0, 1], got {jitter}")
    if base_s < 0 or max_s < 0:
        raise ValueError(f"delays cannot be negative (base_s={base_s}, max_s={max_s})")
    exponent = min(attempt - 1, _MAX_EXPONENT)
    ceiling = min(max_s, base_s * 2.0**exponent)
    random_part = rng.uniform(0.0, ceiling * jitter) if jitter > 0 else 0.0
    return ceiling * (1.0 - jitter) + random_part


def retry_delay(
    attempt: int,
    retry_after_s: float | None,
    base_s: float,
    max_s: float,
    jitter: float,
    rng: random.Random,
) -> float:
    """Delay before retry `attempt`: our backoff, but never less than the server's Retry-After.

    The server's value is a floor, not a replacement: a server that keeps answering "retry in
    1 s" still gets our growing backoff once that is longer. `max_s` caps our backoff only; it
    never cuts a Retry-After short.
    """
    backoff_s = exponential_backoff(attempt, base_s, max_s, jitter, rng)
    if retry_after_s is None:
        return backoff_s
    return max(retry_after_s, backoff_s)


def parse_retry_after(
    headers: Mapping[str, str], *, now_epoch_s: float | None = None
) -> float | None:
    """Seconds the server asks us to wait, or None if it does not say (or says nonsense).

    Reads `retry-after-ms` (milliseconds, OpenAI's) first, then `retry-after` as seconds or as
    an HTTP date (RFC 9110), measured from `now_epoch_s` (default: the wall clock). Header
    names match case-insensitively. A date in the past means 0.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    millis = _non_negative_number(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _non_negative_number(raw)
    if seconds is not None:
        return seconds
    return _seconds_until_http_date(raw, time.time() if now_epoch_s is None else now_epoch_s)


def _non_negative_number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def _seconds_until_http_date(raw: str, now_epoch_s: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" forms: HTTP dates are always GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now_epoch_s)
