"""The bench's statistics against known values (engine.evaluation.stats)."""

from __future__ import annotations

import math
import random

import pytest

from engine.evaluation import stats


def test_kappa_of_a_hand_computed_table() -> None:
    """Rows: rater A yes/no; columns: rater B. 20 yes-yes, 5 yes-no, 10 no-yes, 15 no-no:
    p_o = 35/50 = 0.7; p_e = 0.5 x 0.6 + 0.5 x 0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4."""
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert stats.kappa(a, b) == pytest.approx(0.4)
    result = stats.agreement(a, b, seed=1)
    assert result.agreement == pytest.approx(0.7)
    assert result.labels == ["no", "yes"]
    assert result.confusion == [[15, 10], [5, 20]]
    assert result.kappa_low < 0.4 < result.kappa_high
    assert result.kappa_low >= -1.0
    assert result.kappa_high <= 1.0


def test_kappa_of_perfect_and_chance_agreement() -> None:
    assert stats.kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)
    assert stats.kappa([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.0)
    same = stats.agreement(["a"] * 5, ["a"] * 5)
    assert (same.kappa, same.kappa_low, same.kappa_high, same.agreement) == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_is_the_closed_form(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert stats.pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_curve_averages_the_samples() -> None:
    curve = stats.pass_at_k_curve([(4, 0), (4, 1), (4, 4)], 4)
    assert curve[0] == pytest.approx((0 + 0.25 + 1) / 3)
    assert curve[3] == pytest.approx((0 + 1 + 1) / 3)
    assert curve == sorted(curve)


def test_pass_at_k_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="pass@k"):
        stats.pass_at_k(3, 4, 1)


def test_mcnemar_exact_on_a_textbook_table() -> None:
    """Discordant pairs 10 and 2: two-sided exact p = 2 * P(X <= 2 | 12, 1/2) = 158/4096."""
    assert stats.mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert stats.mcnemar_exact(2, 10) == pytest.approx(158 / 4096)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(5, 5) == pytest.approx(1.0)


def test_paired_difference_counts_the_discordant_samples() -> None:
    a = [1, 1, 1, 0, 0, 1, 1, 0]
    b = [0, 1, 0, 0, 1, 0, 1, 0]
    result = stats.paired_difference("a", a, "b", b, seed=3)
    assert (result.n, result.a_only, result.b_only) == (8, 3, 1)
    assert result.difference == pytest.approx(0.25)
    assert result.low <= 0.25 <= result.high
    assert result.p_value == pytest.approx(stats.mcnemar_exact(3, 1))
    same = stats.paired_difference("a", a, "a2", a)
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_accuracy_interval_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    """100 synthetic samples of 200 Bernoulli(0.3) scores: the percentile interval holds 0.3
    in close to 95 of them (a binomial(100, 0.95) lands in [88, 99] with > 99 % chance)."""
    rng = random.Random(7)
    covered = 0
    for trial in range(100):
        scores = [int(rng.random() < 0.3) for _ in range(200)]
        estimate = stats.accuracy(scores, seed=trial)
        covered += estimate.low <= 0.3 <= estimate.high
        assert estimate.se == pytest.approx(math.sqrt(0.3 * 0.7 / 200), rel=0.35)
    assert 88 <= covered <= 99


def test_accuracy_without_spread_has_a_zero_width_interval() -> None:
    estimate = stats.accuracy([1, 1, 1])
    assert (estimate.value, estimate.se, estimate.low, estimate.high, estimate.n) == (
        1.0,
        0.0,
        1.0,
        1.0,
        3,
    )
    with pytest.raises(ValueError, match="no scores"):
        stats.accuracy([])
