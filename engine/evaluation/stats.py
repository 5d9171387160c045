"""The bench's statistics, as pure functions of the labels (scipy where it fits).

    accuracy           mean of 0/1 scores, bootstrap SE and percentile 95 % interval
    paired_difference  two modes on the same samples: paired bootstrap interval of the
                       difference of accuracies, and McNemar's exact test on the discordant
                       pairs (scipy.stats.binomtest)
    pass_at_k          Chen et al. 2021's unbiased estimator, 1 - C(n-c, k) / C(n, k)
    kappa / agreement  Cohen's kappa with a paired bootstrap interval, raw agreement,
                       the confusion table

Every bootstrap takes its seed: the same labels give the same interval. A sample with no
spread (all scores equal) has a zero-width interval (scipy would warn and return nan).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from scipy import stats as sps

N_RESAMPLES = 2000
CONFIDENCE = 0.95

FloatArray = npt.NDArray[np.float64]


class Estimate(msgspec.Struct, frozen=True):
    value: float
    se: float
    low: float
    high: float
    n: int


class Paired(msgspec.Struct, frozen=True):
    a: str
    b: str
    n: int
    difference: float  # accuracy of a minus accuracy of b
    low: float
    high: float
    a_only: int  # samples a passes and b fails
    b_only: int
    p_value: float  # McNemar's exact test (two-sided)


class Agreement(msgspec.Struct, frozen=True):
    n: int
    agreement: float
    kappa: float
    kappa_low: float
    kappa_high: float
    labels: list[str]
    confusion: list[list[int]]  # rows: the first rater's label, columns: the second's


def _bootstrap(
    data: tuple[FloatArray, ...], statistic: Any, seed: int, paired: bool = False
) -> tuple[float, float, float]:
    """(SE, low, high) of `statistic` by scipy's percentile bootstrap."""
    result = sps.bootstrap(
        data,
        statistic,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        paired=paired,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return float(result.standard_error), float(low), float(high)


def _mean(x: FloatArray, axis: int = -1) -> FloatArray:
    return np.asarray(np.mean(x, axis=axis), dtype=np.float64)


def accuracy(scores: Sequence[int], seed: int = 0) -> Estimate:
    """Mean of 0/1 `scores`, with its bootstrap SE and 95 % interval."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no scores")
    value = float(x.mean())
    if np.all(x == x[0]):
        return Estimate(value, 0.0, value, value, int(x.size))
    se, low, high = _bootstrap((x,), _mean, seed)
    return Estimate(value, se, low, high, int(x.size))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs at 1/2."""
    if a_only + b_only == 0:
        return 1.0
    return float(sps.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def paired_difference(
    a_name: str, a: Sequence[int], b_name: str, b: Sequence[int], seed: int = 0
) -> Paired:
    """Mode a against mode b on the same samples (a[i] and b[i] score the same sample)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size != y.size or x.size == 0:
        raise ValueError("paired scores need the same, non-zero number of samples")
    diff = x - y
    value = float(diff.mean())
    if np.all(diff == diff[0]):
        low = high = value
    else:
        _, low, high = _bootstrap((diff,), _mean, seed)
    a_only, b_only = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    return Paired(
        a_name, b_name, int(x.size), value, low, high, a_only, b_only, mcnemar_exact(a_only, b_only)
    )


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n draws of which c pass (Chen et al. 2021, numerically stable)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_curve(per_sample: Sequence[tuple[int, int]], k_max: int) -> list[float]:
    """Mean pass@k over samples, k = 1..k_max; `per_sample` holds (n draws, c passing)."""
    return [
        float(np.mean([pass_at_k(n, c, k) for n, c in per_sample])) for k in range(1, k_max + 1)
    ]


def _kappa_of_codes(x: FloatArray, y: FloatArray, categories: int) -> FloatArray:
    """Cohen's kappa along the last axis of two arrays of category codes (vectorised).

    Both raters using one same category throughout: kappa 1 (perfect agreement), where the
    textbook formula is 0/0."""
    po = _mean(x == y)
    pe = np.zeros_like(po)
    for code in range(categories):
        pe = pe + _mean(x == code) * _mean(y == code)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(pe < 1.0, (po - pe) / np.where(pe < 1.0, 1.0 - pe, 1.0), 1.0)
    return np.asarray(kappa, dtype=np.float64)


def kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    x, y, labels = _codes(a, b)
    return float(_kappa_of_codes(x, y, len(labels)))


def _codes(
    a: Sequence[Hashable], b: Sequence[Hashable]
) -> tuple[FloatArray, FloatArray, list[str]]:
    if len(a) != len(b) or not a:
        raise ValueError("two raters need the same, non-zero number of labels")
    labels = sorted({str(v) for v in (*a, *b)})
    index = {label: i for i, label in enumerate(labels)}
    x = np.array([index[str(v)] for v in a], dtype=np.float64)
    y = np.array([index[str(v)] for v in b], dtype=np.float64)
    return x, y, labels


def agreement(a: Sequence[Hashable], b: Sequence[Hashable], seed: int = 0) -> Agreement:
    """Cohen's kappa (paired bootstrap 95 % interval), raw agreement and confusion table."""
    x, y, labels = _codes(a, b)
    value = float(_kappa_of_codes(x, y, len(labels)))
    if np.all(x == x[0]) and np.all(y == y[0]):
        low = high = value
    else:

        def statistic(u: FloatArray, v: FloatArray, axis: int = -1) -> FloatArray:
            return _kappa_of_codes(u, v, len(labels))

        _, low, high = _bootstrap((x, y), statistic, seed, paired=True)
    table = [
        [int(np.sum((x == i) & (y == j))) for j in range(len(labels))] for i in range(len(labels))
    ]
    return Agreement(int(x.size), float(np.mean(x == y)), value, low, high, labels, table)
