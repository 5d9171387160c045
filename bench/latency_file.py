"""latency.json: each run's latency distribution, kept so that report.png can be drawn again
from the run directory alone (`python -m bench plot RUN_DIR`).

report.json holds percentiles only; a CDF needs the distribution. Keeping every sample would
cost megabytes per scenario (10,000 jobs x 18 runs x 2), so each run keeps at most
`QUANTILES` + 1 evenly spaced quantiles (every sample when it has fewer): enough for a CDF
drawn at a few hundred pixels, for p50 and p99 (which fall on the grid), and for pooling the
rounds of one variant (each point weighs count / points).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from bench.measure import percentile

#: quantile steps kept per run: 0.1 % apart, so p50 and p99 are exact grid points
QUANTILES = 1000


class Distribution(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ascending quantiles (ms) of `count` samples: every sample when count <= QUANTILES."""

    count: int
    ms: list[float]


class RunLatency(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One run's API-call and end-to-end latency, keyed like RunMetrics."""

    variant: str
    concurrency: int
    round: int
    api: Distribution
    e2e: Distribution


class LatencyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    quantiles: int
    runs: list[RunLatency]


_decoder = msgspec.json.Decoder(LatencyFile)


def distribution(values: Iterable[float], quantiles: int = QUANTILES) -> Distribution:
    ordered = sorted(values)
    if len(ordered) <= quantiles:
        return Distribution(len(ordered), [round(v, 3) for v in ordered])
    points = [round(percentile(ordered, 100.0 * i / quantiles), 3) for i in range(quantiles + 1)]
    return Distribution(len(ordered), points)


def latency_file(
    samples: Mapping[tuple[str, int, int], tuple[Sequence[float], Sequence[float]]],
) -> LatencyFile:
    """`samples`: (variant, concurrency, round) -> (API ms, end-to-end ms), as the runner
    collects them."""
    runs = [
        RunLatency(variant, concurrency, round_, distribution(api), distribution(e2e))
        for (variant, concurrency, round_), (api, e2e) in samples.items()
    ]
    return LatencyFile(QUANTILES, runs)


def write_latency(data: LatencyFile, path: Path) -> None:
    path.write_bytes(msgspec.json.encode(data) + b"\n")


def read_latency(path: Path) -> LatencyFile:
    """The file's runs; a clear error naming the file when it is not a latency file."""
    try:
        return _decoder.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a bench latency file: {exc}") from None


class Pooled(msgspec.Struct, frozen=True):
    """Several runs' distributions as one weighted sample: ascending values and each one's
    cumulative fraction."""

    ms: list[float]
    fraction: list[float]

    def quantile(self, q: float) -> float:
        """The smallest value whose cumulative fraction reaches q (0..1)."""
        for value, frac in zip(self.ms, self.fraction, strict=True):
            if frac >= q - 1e-9:
                return value
        return self.ms[-1]


def pool(parts: Sequence[Distribution]) -> Pooled | None:
    """The rounds of one variant pooled: each stored point stands for count / points samples
    (the quantile grid is even, so this is the run's distribution, weighted by its size)."""
    weighted: list[tuple[float, float]] = []
    for part in parts:
        if part.count and part.ms:
            weight = part.count / len(part.ms)
            weighted += [(value, weight) for value in part.ms]
    if not weighted:
        return None
    weighted.sort()
    total = math.fsum(w for _, w in weighted)
    ms: list[float] = []
    fraction: list[float] = []
    running = 0.0
    for value, weight in weighted:
        running += weight
        ms.append(value)
        fraction.append(min(1.0, running / total))
    return Pooled(ms, fraction)
