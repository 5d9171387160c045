"""The benchmark's metrics as pure functions: numbers in, numbers out, no I/O, no clock.

- `percentile` / `summarize`: latency percentiles (linear interpolation between closest ranks,
  numpy's default method).
- `rate_series` / `pick_bin_s`: jobs/s and tokens/s over time from finish times.
- `ceiling`: the scenario's theoretical ceiling, the smallest of concurrency / mean latency,
  RPM / 60 and TPM / 60 / tokens per job; `efficiency` = achieved rate / that ceiling.
- `cost_usd`: tokens priced per million, and `BATCH_DISCOUNT` for the Batch API.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import msgspec

from engine.prices import Price

#: The OpenAI Batch API bills half the standard price (input and output alike).
BATCH_DISCOUNT = 0.5


class Percentiles(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


class SeriesPoint(msgspec.Struct, frozen=True, array_like=True):
    """One bin of the throughput series: its start (s from the run's start) and rates."""

    t_s: float
    jobs_per_s: float
    tokens_per_s: float | None


class Ceiling(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    per_s: float
    binding: str  # "concurrency", "rpm" or "tpm"


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of an ascending, non-empty sequence."""
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100], got {q}")
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Iterable[float]) -> Percentiles | None:
    """count, mean, p50, p90, p99 and max of `values` (milliseconds); None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return Percentiles(
        count=len(ordered),
        mean_ms=round(math.fsum(ordered) / len(ordered), 3),
        p50_ms=round(percentile(ordered, 50), 3),
        p90_ms=round(percentile(ordered, 90), 3),
        p99_ms=round(percentile(ordered, 99), 3),
        max_ms=round(ordered[-1], 3),
    )


_NICE_BINS_S = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)


def pick_bin_s(span_s: float, target_bins: int = 50) -> float:
    """The smallest round bin width giving at most `target_bins` bins over `span_s`."""
    for width in _NICE_BINS_S:
        if span_s / width <= target_bins:
            return width
    return _NICE_BINS_S[-1]


def rate_series(
    finished_s: Sequence[float], tokens: Sequence[int] | None, bin_s: float
) -> list[SeriesPoint]:
    """Jobs/s (and tokens/s when `tokens` is given) per bin of `bin_s` seconds.

    `finished_s` are finish times in seconds from the run's start (>= 0); `tokens[i]` belongs
    to `finished_s[i]`. Bins run from 0 to the last finish; the last bin is usually partial
    and is divided by its real width (up to the last finish), not by `bin_s`.
    """
    if tokens is not None and len(tokens) != len(finished_s):
        raise ValueError("tokens and finished_s differ in length")
    if not finished_s:
        return []
    end_s = max(finished_s)
    n_bins = max(1, math.ceil(end_s / bin_s))
    jobs = [0] * n_bins
    toks = [0] * n_bins
    for i, t in enumerate(finished_s):
        index = min(int(t / bin_s), n_bins - 1)
        jobs[index] += 1
        if tokens is not None:
            toks[index] += tokens[i]
    points: list[SeriesPoint] = []
    for index in range(n_bins):
        start = index * bin_s
        width = min(bin_s, end_s - start) if index == n_bins - 1 else bin_s
        width = width if width > 0 else bin_s
        tokens_rate = round(toks[index] / width, 1) if tokens is not None else None
        points.append(SeriesPoint(round(start, 3), round(jobs[index] / width, 1), tokens_rate))
    return points


def ceiling(
    concurrency: int,
    mean_latency_s: float,
    rpm: float | None = None,
    tpm: float | None = None,
    tokens_per_job: float | None = None,
) -> Ceiling | None:
    """The highest rate the scenario allows, and which limit sets it; None when unbounded.

    Zero latency bounds nothing (the limit is then the machine, measured by the bare client);
    a TPM limit needs `tokens_per_job` (what the limit counts per request).
    """
    candidates: list[Ceiling] = []
    if mean_latency_s > 0.0:
        candidates.append(Ceiling(concurrency / mean_latency_s, "concurrency"))
    if rpm is not None:
        candidates.append(Ceiling(rpm / 60.0, "rpm"))
    if tpm is not None and tokens_per_job:
        candidates.append(Ceiling(tpm / 60.0 / tokens_per_job, "tpm"))
    if not candidates:
        return None
    return min(candidates, key=lambda c: c.per_s)


def efficiency(rate_per_s: float, limit: Ceiling | None) -> float | None:
    """Achieved rate / ceiling (None when there is no ceiling)."""
    if limit is None or limit.per_s <= 0.0:
        return None
    return rate_per_s / limit.per_s


def ratio(numerator: float, denominator: float | None) -> float | None:
    if not denominator:
        return None
    return numerator / denominator


def cost_usd(prompt_tokens: float, completion_tokens: float, price: Price) -> float:
    """Standard-tier price of the tokens (multiply by BATCH_DISCOUNT for the Batch API)."""
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


def expected_distinct(pool: int, draws: int, drawers: int) -> float:
    """Expected number of distinct items drawn when each of `drawers` draws `draws` distinct
    items uniformly from `pool`, independently: pool * (1 - (1 - draws/pool) ** drawers)."""
    if pool <= 0 or draws <= 0 or drawers <= 0:
        return 0.0
    if draws > pool:
        raise ValueError(f"cannot draw {draws} distinct items from {pool}")
    return pool * (1.0 - (1.0 - draws / pool) ** drawers)


def compare(measured: float, op: str, threshold: float) -> bool:
    """`measured op threshold` for the operators a `Target` may use."""
    match op:
        case ">=":
            return measured >= threshold
        case "<=":
            return measured <= threshold
        case "<":
            return measured < threshold
        case ">":
            return measured > threshold
        case "==":
            return measured == threshold
    raise ValueError(f"unknown operator {op!r}")
