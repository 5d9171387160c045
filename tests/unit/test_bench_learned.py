"""The bench's view of the learned rate: history points → bins of utilisation and 429 share."""

from __future__ import annotations

import pytest

from bench.learned import coarser, learned_series


def test_bins_count_answers_and_429s_between_history_points() -> None:
    # (s from start, learned rpm, answers so far, 429s so far)
    history = [(0.5, 600.0, 5, 0), (1.0, 1200.0, 12, 1), (1.5, 1200.0, 22, 1), (2.5, 1020.0, 40, 3)]
    points = learned_series(history, 1.0, 1200.0)
    assert [p.t_s for p in points] == [0.0, 1.0, 2.0]
    first, second, third = points
    assert first.learned_rpm == 600.0
    assert (first.answered, first.limited) == (5, 0)
    assert first.accepted_rpm == pytest.approx(300.0)
    assert first.utilisation == pytest.approx(0.25)
    assert (second.answered, second.limited, second.learned_rpm) == (17, 1, 1200.0)
    assert second.share_429 == pytest.approx(1 / 17, abs=1e-4)
    assert (third.answered, third.limited, third.learned_rpm) == (18, 2, 1020.0)


def test_coarser_bins_sum_their_counts() -> None:
    history = [(t + 0.9, 1200.0, 20 * (t + 1), t) for t in range(6)]
    merged = coarser(learned_series(history, 1.0, None), 3, 1200.0)
    assert [p.t_s for p in merged] == [0.0, 3.0]
    assert [(p.answered, p.limited) for p in merged] == [(60, 2), (60, 3)]
    assert merged[0].accepted_rpm == pytest.approx(58 * 60 / 3)
    assert merged[0].utilisation == pytest.approx(58 * 20 / 1200, abs=1e-4)


def test_no_history_no_points() -> None:
    assert learned_series([], 1.0, 1200.0) == []
    assert coarser([], 10, None) == []
