"""Raking (iterative proportional fitting) of person weights to marginal totals. Pure numpy.

Each margin gives every person a category index (or -1: outside the margin's universe) and
each category a target total. One sweep scales, margin by margin, the weights of the persons
in each category so that the category's weighted total equals its target; persons outside
the universe are left alone. Sweeps repeat until every category of every margin is within
`tolerance` (relative) of its target. A category with target 0 zeroes its persons' weights;
a category with a positive target but no weight cannot be fitted (RakingInfeasibleError).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.persona.census.errors import RakingInfeasibleError, RakingNotConvergedError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Margin:
    name: str
    category_names: tuple[str, ...]
    #: Per person: index into `targets`, or -1 when outside the universe.
    categories: IntArray
    targets: FloatArray


@dataclass(frozen=True)
class RakingResult:
    weights: FloatArray
    iterations: int
    max_relative_error: float


def weighted_totals(margin: Margin, weights: FloatArray) -> FloatArray:
    inside = margin.categories >= 0
    return np.bincount(
        margin.categories[inside], weights=weights[inside], minlength=len(margin.targets)
    ).astype(np.float64)


def relative_errors(margin: Margin, weights: FloatArray) -> FloatArray:
    """|total / target - 1| per category (0 where target and total are both 0)."""
    totals = weighted_totals(margin, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = np.abs(totals / margin.targets - 1.0)
    return np.where(margin.targets == 0, np.where(totals == 0, 0.0, np.inf), errors)


def _check_feasible(margin: Margin, weights: FloatArray) -> None:
    totals = weighted_totals(margin, weights)
    for index, (total, target) in enumerate(zip(totals, margin.targets, strict=True)):
        if target > 0 and total <= 0:
            raise RakingInfeasibleError(margin.name, margin.category_names[index], float(target))


def _adjust(margin: Margin, weights: FloatArray) -> None:
    inside = margin.categories >= 0
    totals = weighted_totals(margin, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(totals > 0, margin.targets / totals, 1.0)
    weights[inside] *= factors[margin.categories[inside]]


def max_relative_error(margins: Sequence[Margin], weights: FloatArray) -> float:
    return max((float(relative_errors(m, weights).max(initial=0.0)) for m in margins), default=0.0)


def rake(
    base_weights: FloatArray,
    margins: Sequence[Margin],
    tolerance: float = 1e-9,
    max_iterations: int = 500,
) -> RakingResult:
    """Weights closest (in the raking sense) to `base_weights` that meet every margin."""
    weights = np.array(base_weights, dtype=np.float64)
    for margin in margins:
        if len(margin.categories) != len(weights):
            raise ValueError(
                f"margin {margin.name!r}: {len(margin.categories)} persons, weights: {len(weights)}"
            )
        _check_feasible(margin, weights)
    error = max_relative_error(margins, weights)
    iterations = 0
    while error > tolerance:
        if iterations == max_iterations:
            raise RakingNotConvergedError(iterations, error, tolerance)
        for margin in margins:
            _adjust(margin, weights)
        iterations += 1
        error = max_relative_error(margins, weights)
    return RakingResult(weights=weights, iterations=iterations, max_relative_error=error)
