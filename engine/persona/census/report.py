"""Marginals of the personas next to the national ACS 2022 figures, in percent.

For each raked margin and category: the ACS 2022 share, the share in the raked population,
the share among the sampled personas (each persona counts once: the sample is already drawn
in proportion to the raked weights), and personas minus ACS in percentage points. Shares are
within the margin's universe (education: persons 25 and over; language: 5 and over).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from engine.persona.census.raking import FloatArray, Margin, weighted_totals

DEFAULT_TOLERANCE_PP = 3.0


class MarginalRow(msgspec.Struct, frozen=True):
    margin: str
    category: str
    acs_2022_pct: float
    raked_pct: float
    personas_pct: float
    diff_pp: float
    checked: bool


def _percent(values: FloatArray) -> FloatArray:
    total = float(values.sum())
    return values / total * 100.0 if total > 0 else np.zeros_like(values)


def marginal_rows(
    margins: Sequence[Margin],
    checked: Sequence[bool],
    weights: FloatArray,
    sample: npt.NDArray[np.int64],
) -> list[MarginalRow]:
    rows: list[MarginalRow] = []
    ones = np.ones(len(sample), dtype=np.float64)
    for margin, is_checked in zip(margins, checked, strict=True):
        sampled = Margin(
            margin.name, margin.category_names, margin.categories[sample], margin.targets
        )
        acs = _percent(margin.targets)
        raked = _percent(weighted_totals(margin, weights))
        personas = _percent(weighted_totals(sampled, ones))
        for index, category in enumerate(margin.category_names):
            rows.append(
                MarginalRow(
                    margin=margin.name,
                    category=category,
                    acs_2022_pct=round(float(acs[index]), 2),
                    raked_pct=round(float(raked[index]), 2),
                    personas_pct=round(float(personas[index]), 2),
                    diff_pp=round(float(personas[index] - acs[index]), 2),
                    checked=is_checked,
                )
            )
    return rows


def max_checked_diff_pp(rows: Sequence[MarginalRow]) -> float:
    return max((abs(row.diff_pp) for row in rows if row.checked), default=0.0)


def format_table(rows: Sequence[MarginalRow], tolerance_pp: float = DEFAULT_TOLERANCE_PP) -> str:
    """A fixed-width table; checked rows outside the tolerance are marked with `!`."""
    width = max((len(row.category) for row in rows), default=10)
    header = (
        f"{'margin':<24} {'category':<{width}} {'ACS 2022 %':>10} {'raked %':>8} "
        f"{'personas %':>10} {'diff pp':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        flag = " !" if row.checked and abs(row.diff_pp) > tolerance_pp else ""
        lines.append(
            f"{row.margin:<24} {row.category:<{width}} {row.acs_2022_pct:>10.1f} "
            f"{row.raked_pct:>8.1f} {row.personas_pct:>10.1f} {row.diff_pp:>+8.1f}{flag}"
        )
    lines.append(
        f"max |diff| over checked margins (sex, age, race/Hispanic origin, education 25+): "
        f"{max_checked_diff_pp(rows):.1f} pp (tolerance {tolerance_pp:.1f} pp)"
    )
    return "\n".join(lines)
