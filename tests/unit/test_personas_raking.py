"""Raking (iterative proportional fitting) on small tables with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.persona.census.errors import RakingInfeasibleError, RakingNotConvergedError
from engine.persona.census.raking import Margin, rake, weighted_totals


def margin(name: str, categories: list[int], targets: list[float]) -> Margin:
    names = tuple(f"{name}{i}" for i in range(len(targets)))
    return Margin(name, names, np.array(categories, dtype=np.int64), np.array(targets))


def test_two_by_two_table_reaches_the_independence_solution() -> None:
    # persons: (row, column) = (0,0), (0,1), (1,0), (1,1), equal base weights
    rows = margin("row", [0, 0, 1, 1], [60.0, 40.0])
    cols = margin("col", [0, 1, 0, 1], [30.0, 70.0])
    result = rake(np.ones(4), [rows, cols])
    np.testing.assert_allclose(result.weights, [18.0, 42.0, 12.0, 28.0], rtol=1e-8)
    assert result.max_relative_error <= 1e-9
    assert result.iterations >= 1


def test_preserves_the_interaction_of_the_base_weights() -> None:
    base = np.array([4.0, 1.0, 1.0, 4.0])
    rows = margin("row", [0, 0, 1, 1], [50.0, 50.0])
    cols = margin("col", [0, 1, 0, 1], [50.0, 50.0])
    weights = rake(base, [rows, cols]).weights
    np.testing.assert_allclose(weights, [40.0, 10.0, 10.0, 40.0], rtol=1e-8)


def test_persons_outside_a_universe_are_only_moved_by_other_margins() -> None:
    everyone = margin("all", [0, 0, 0, 0], [8.0])
    adults = margin("adult education", [-1, 0, 1, 1], [3.0, 3.0])
    result = rake(np.ones(4), [everyone, adults])
    np.testing.assert_allclose(weighted_totals(adults, result.weights), [3.0, 3.0], rtol=1e-8)
    np.testing.assert_allclose(result.weights, [2.0, 3.0, 1.5, 1.5], rtol=1e-8)


def test_zero_target_zeroes_its_persons() -> None:
    result = rake(np.ones(3), [margin("m", [0, 1, 1], [0.0, 10.0])])
    np.testing.assert_allclose(result.weights, [0.0, 5.0, 5.0])


def test_positive_target_without_persons_is_infeasible() -> None:
    with pytest.raises(RakingInfeasibleError) as error:
        rake(np.ones(2), [margin("sex", [0, 0], [5.0, 5.0])])
    assert (error.value.margin, error.value.category, error.value.target) == ("sex", "sex1", 5.0)


def test_inconsistent_totals_do_not_converge() -> None:
    a = margin("a", [0, 1], [50.0, 50.0])
    b = margin("b", [0, 0], [300.0])
    with pytest.raises(RakingNotConvergedError) as error:
        rake(np.ones(2), [a, b], max_iterations=20)
    assert error.value.iterations == 20
    assert error.value.max_relative_error > error.value.tolerance


def test_base_weights_are_not_modified() -> None:
    base = np.ones(2)
    rake(base, [margin("m", [0, 1], [3.0, 7.0])])
    np.testing.assert_array_equal(base, [1.0, 1.0])
