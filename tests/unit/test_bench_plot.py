"""report.png drawn from a stored run: the fixture under data/bench_overhead/ is the
report.json and latency.json of a real bench run (its command is in report.json:
`overhead --jobs 300 --repeat 2 --concurrency 8,32`), checked in as written."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bench.latency_file import Distribution, distribution, pool, read_latency
from bench.palette import FIXED, SPARE, variant_colors
from bench.plot import (
    TITLE_HEADLINE,
    TITLE_LATENCY,
    TITLE_OVER_TIME,
    build_figure,
)
from bench.report import BenchReport, evaluate, report_decoder
from bench.scenarios import Target

FIXTURE = Path(__file__).parent / "data" / "bench_overhead"


def _report() -> BenchReport:
    return report_decoder.decode((FIXTURE / "report.json").read_bytes())


def _figure() -> Figure:
    return build_figure(_report(), read_latency(FIXTURE / "latency.json"))


def _axes(fig: Figure) -> list[Axes]:
    return [ax for sub in fig.subfigs for ax in sub.axes]


def test_the_fixture_is_a_real_run_with_rounds() -> None:
    report = _report()
    assert report.command.startswith("python -m bench ")
    assert " run overhead --jobs 300 --repeat 2 --concurrency 8,32 " in report.command
    assert {r.round for r in report.runs} == {0, 1}
    assert {r.variant for r in report.runs} == {"bare", "engine", "engine-sdk"}


def test_panels_are_titled_by_what_they_show_per_concurrency() -> None:
    fig = _figure()
    titles = [ax.get_title(loc="left") for ax in _axes(fig)]
    assert titles[0].startswith(f"{TITLE_HEADLINE} (bar: median of 2 rounds, whisker min\u2013max)")
    for concurrency in (8, 32):
        assert f"{TITLE_LATENCY}, concurrency {concurrency} (2 rounds pooled)" in titles
        [over_time] = [t for t in titles if t.startswith(f"{TITLE_OVER_TIME}, concurrency "
                                                         f"{concurrency}\n")]  # fmt: skip
        assert "100 % = bare " in over_time
    assert len(titles) == 5  # the headline, then a CDF and a time panel per concurrency
    suptitle = fig.get_suptitle()
    assert "bench overhead: 300 jobs per run, concurrency 8, 32, 2 rounds" in suptitle
    assert _report().started_at in suptitle


def test_one_legend_entry_per_variant_not_per_round() -> None:
    fig = _figure()
    legends = [legend for ax in _axes(fig) if (legend := ax.get_legend()) is not None]
    assert len(legends) == 1
    assert not fig.legends
    texts = [t.get_text() for t in legends[0].get_texts()]
    assert texts[:3] == ["bare", "engine", "engine-sdk"]
    # the rest: the scenario's one rate target, with its status at each concurrency
    [target] = texts[3:]
    assert target.startswith("target: engine >= 50 %")
    assert "c=8: " in target
    assert "c=32: " in target


def test_no_two_variants_share_a_colour_and_each_keeps_its_own_everywhere() -> None:
    fig = _figure()
    headline, *panels = _axes(fig)
    legend = headline.get_legend()
    assert legend is not None
    legend_colors = {
        text.get_text(): to_hex(handle.get_facecolor())
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
        if isinstance(handle, Rectangle)
    }
    assert len(set(legend_colors.values())) == len(legend_colors) == 3
    assert legend_colors == {v: FIXED[v] for v in ("bare", "engine", "engine-sdk")}
    # bars: one per variant and concurrency (the median of the rounds), in the variant's colour
    bars = [to_hex(p.get_facecolor()) for p in headline.patches if isinstance(p, Rectangle)]
    assert sorted(bars) == sorted(list(legend_colors.values()) * 2)
    for ax in panels:
        line_colors = {to_hex(line.get_color()) for line in ax.get_lines()} - {"#808080"}
        assert line_colors == set(legend_colors.values()), ax.get_title(loc="left")


def test_end_to_end_is_dashed_only_where_it_differs() -> None:
    fig = _figure()
    cdfs = [ax for ax in _axes(fig) if ax.get_title(loc="left").startswith(TITLE_LATENCY)]
    for ax in cdfs:
        curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]  # type: ignore[arg-type]
        bare = [c for c in curves if to_hex(c.get_color()) == FIXED["bare"]]
        # the bare client's end to end is its API call: one solid line, no dashed twin
        assert [c.get_linestyle() for c in bare] == ["-"]


def test_unknown_variants_get_distinct_colours_deterministically() -> None:
    names = ["bare", "engine", "engine-pg", "engine-batch", *[f"x{i}" for i in range(12)]]
    colors = variant_colors(names)
    assert len(set(colors.values())) == len(names)
    assert colors["bare"] == FIXED["bare"]
    assert colors["engine-pg"] in SPARE
    assert variant_colors(reversed(names)) == colors  # the order given does not matter
    assert variant_colors(["engine-pg"])["engine-pg"] == colors["engine-pg"]
    assert not set(SPARE) & set(FIXED.values())


def test_pooled_rounds_weigh_each_run_by_its_size() -> None:
    small = distribution([10.0] * 10)
    large = distribution([float(i) for i in range(1, 5001)])  # stored as 1,001 quantiles
    assert (large.count, len(large.ms)) == (5000, 1001)
    pooled = pool([small, large])
    assert pooled is not None
    assert pooled.quantile(1.0) == 5000.0
    assert pooled.quantile(0.5) == pytest.approx(2495.0, abs=10)
    assert pool([Distribution(0, [])]) is None


def test_a_new_scenario_gets_the_same_layout_with_its_own_variants_and_checks() -> None:
    """As a scenario added later would: an unknown variant name, a target that is not a rate,
    one concurrency."""
    report = _report()
    runs = [
        msgspec.structs.replace(
            r, variant="engine-batch" if r.variant == "engine-sdk" else r.variant
        )
        for r in report.runs
        if r.concurrency == 8
    ]
    no_failures = Target("every job done (no failures)", "failed", "==", 0)
    scenario = msgspec.structs.replace(report.scenario, name="new", targets=(no_failures,))
    checks = evaluate(scenario.targets, runs)
    new = msgspec.structs.replace(report, scenario=scenario, runs=runs, checks=checks)
    fig = build_figure(new, None)
    headline, cdf, over_time = _axes(fig)
    assert cdf.get_title(loc="left") == f"{TITLE_LATENCY}, concurrency 8"
    assert [t.get_text() for t in cdf.texts] == ["no latency.json in the run directory"]
    assert over_time.get_title(loc="left").startswith(f"{TITLE_OVER_TIME}, concurrency 8\n")
    legend = headline.get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[:3] == ["bare", "engine", "engine-batch"]
    assert texts[3].replace("\n", " ") == "check: every job done (no failures) (c=8: met)"
    colors = [to_hex(h.get_facecolor()) for h in legend.legend_handles if isinstance(h, Rectangle)]
    assert len(set(colors)) == 3
    assert colors[2] == variant_colors(["engine-batch"])["engine-batch"]
