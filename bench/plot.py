"""report.png: the same layout for every scenario, built to answer at a glance which variant is
fastest, by how much, how stable across rounds, and what the latency tails look like.

Rows, top to bottom (one column per concurrency below the first row):
1. headline: jobs/s per variant grouped by concurrency; bar = median over the rounds, whisker =
   their min-max, label = ratio to bare; the scenario's rate targets (and ceiling) as lines;
2. latency CDF per concurrency: one line per variant (rounds pooled), API call solid, end to
   end dashed where it differs; p50 and p99 marked; a logit y axis so the tail has room;
3. jobs/s over time in round 1, one line per variant, x = share of that run's own duration
   (a 2 s run is not a sliver beside a 7 s one);
4. only where the simulator enforces an RPM limit and the engine learned a rate: the learned
   rate against that limit (round 1, the first concurrency).

Each variant keeps one colour everywhere (bench/palette.py); the one legend sits right of the
headline, one entry per variant. Drawn with matplotlib's object API on a bare `Figure` (the Agg
canvas): no pyplot, no global backend selection, nothing configured at import.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.latency_file import LatencyFile, Pooled, pool
from bench.palette import variant_colors
from bench.report import BenchReport, CheckResult, RunMetrics
from bench.scenarios import Target

TITLE_HEADLINE = "jobs/s per variant"
TITLE_LATENCY = "latency CDF"
TITLE_OVER_TIME = "jobs/s over time, round 1"
TITLE_LEARNED = "learned request rate"
#: end to end is drawn only when it differs from the API call by more than this (p50/p90/p99)
_DIFFERS = 0.05
_CDF_BOTTOM, _CDF_TOP = 0.005, 0.9995
_CDF_TICKS = (0.01, 0.1, 0.5, 0.9, 0.99, 0.999)
_CDF_TICK_LABELS = ("1 %", "10 %", "p50", "90 %", "p99", "99.9 %")
_TARGET_COLOR = "#b00020"
#: a ceiling more than this many times the highest bar is named in the legend, not drawn
_CEILING_SHOWN = 2.0
#: behind a bar's label, so a target line crossing it does not hide it
_LABEL_BOX = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1}


def _ordered(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


class _Layout:
    """What every panel shares: the variants in the scenario's order, the concurrencies, the
    colours, and the runs grouped by (variant, concurrency)."""

    def __init__(self, report: BenchReport) -> None:
        runs = report.runs
        self.variants = _ordered([r.variant for r in runs])
        self.concurrencies = sorted({r.concurrency for r in runs})
        self.colors = variant_colors(self.variants)
        self.rounds = max((r.round for r in runs), default=0) + 1
        self.runs: dict[tuple[str, int], list[RunMetrics]] = {}
        for run in runs:
            self.runs.setdefault((run.variant, run.concurrency), []).append(run)

    def of(self, variant: str, concurrency: int) -> list[RunMetrics]:
        return self.runs.get((variant, concurrency), [])


def _bar_label(variant: str, runs: list[RunMetrics], median: float) -> str:
    """The rate, above it the comparison the scenario is about: the ratio to bare (median of
    the rounds' ratios), or for a faulty run its time against the fault-free twin's."""
    text = f"{median:,.0f}/s"
    to_bare = [r.rate_vs_bare for r in runs if r.rate_vs_bare is not None]
    to_clean = [r.time_vs_fault_free for r in runs if r.time_vs_fault_free is not None]
    if to_bare and variant != "bare":
        return f"{statistics.median(to_bare):.2f}\u00d7 bare\n{text}"
    if to_clean:
        return f"time - outage:\n{statistics.median(to_clean):.2f}\u00d7 fault-free\n{text}"
    return text


def _target_level(target: Target, layout: _Layout, concurrency: int) -> float | None:
    """Where a target sits on the jobs/s axis, when it is a rate (else None)."""
    own = layout.of(target.variant, concurrency)
    if target.metric == "rate_per_s":
        return target.threshold
    if target.metric == "rate_vs_bare":
        bare = layout.of("bare", concurrency)
        return target.threshold * statistics.median(r.rate_per_s for r in bare) if bare else None
    if target.metric == "efficiency":
        ceilings = [r.ceiling_per_s for r in own if r.ceiling_per_s is not None]
        return target.threshold * ceilings[0] if ceilings else None
    return None


def _status(checks: list[CheckResult], target: Target, concurrency: int) -> str:
    for check in checks:
        if check.label == target.label and check.concurrency == concurrency:
            return check.status
    return "pending"


def _headline(ax: Axes, report: BenchReport, layout: _Layout) -> None:
    n = len(layout.variants)
    width = 0.8 / max(n, 3)  # one variant: a bar, not a wall
    top = 0.0
    labels: list[tuple[float, float, float, str, str]] = []  # x, min, max, text, variant
    for group, concurrency in enumerate(layout.concurrencies):
        for index, variant in enumerate(layout.variants):
            runs = layout.of(variant, concurrency)
            if not runs:
                continue
            rates = [r.rate_per_s for r in runs]
            median = statistics.median(rates)
            x = group - width * n / 2 + width * (index + 0.5)
            ax.bar(x, median, width * 0.9, color=layout.colors[variant], label=variant)
            low, high = min(rates), max(rates)
            if high > low:
                ax.errorbar(x, median, yerr=[[median - low], [high - median]], color="black",
                            capsize=4, linewidth=1.2)  # fmt: skip
            labels.append((x, low, high, _bar_label(variant, runs, median), variant))
            top = max(top, high)
    off_scale: list[str] = []
    bars_top = top
    for group, concurrency in enumerate(layout.concurrencies):
        ceiling = _ceiling(layout, concurrency)
        # a ceiling far above every bar (little latency, no limit) would squash the bars
        if ceiling is not None and ceiling > _CEILING_SHOWN * bars_top:
            off_scale.append(f"{ceiling:,.0f}/s at c={concurrency}")
        elif ceiling is not None:
            ax.hlines(ceiling, group - 0.45, group + 0.45, color="black", linestyle=":")
            ax.annotate(f"{ceiling:,.0f}/s", (group + 0.45, ceiling), xytext=(2, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=8)  # fmt: skip
            top = max(top, ceiling)
        top = max(top, _targets(ax, report, layout, group, concurrency))
    ax.set_xticks(range(len(layout.concurrencies)),
                  [f"concurrency {c}" for c in layout.concurrencies])  # fmt: skip
    ax.set_xlim(-0.5, len(layout.concurrencies) - 0.5)
    ax.set_ylim(0, top * 1.3 if top > 0 else 1)
    for x, low, high, text, variant in labels:
        _place_label(ax, (x, low, high), text, layout.colors[variant])
    ax.set_ylabel("completed jobs/s")
    rounds = "1 round"
    if layout.rounds > 1:
        rounds = f"median of {layout.rounds} rounds, whisker min\u2013max"
    ax.set_title(f"{TITLE_HEADLINE} (bar: {rounds})", loc="left")
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, report, layout, off_scale)


def _ceiling(layout: _Layout, concurrency: int) -> float | None:
    """The scenario's ceiling at this concurrency (the same for every variant)."""
    runs = [r for v in layout.variants for r in layout.of(v, concurrency)]
    return next((r.ceiling_per_s for r in runs if r.ceiling_per_s is not None), None)


def _place_label(ax: Axes, bar: tuple[float, float, float], text: str, color: str) -> None:
    """On the bar, at its foot, where the target and ceiling lines (near the top) never cross
    it; above the whisker when the bar below the whisker's foot is too short to hold it."""
    x, low, high = bar
    lines = text.count("\n") + 1
    if low >= ax.get_ylim()[1] * (0.05 * lines + 0.02):
        ax.annotate(text, (x, 0), xytext=(0, 5), textcoords="offset points", ha="center",
                    va="bottom", fontsize=10, fontweight="bold", color=_ink(color))  # fmt: skip
    else:
        ax.annotate(text, (x, high), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=10, fontweight="bold", bbox=_LABEL_BOX)  # fmt: skip


def _ink(background: str) -> str:
    """White on a dark bar, black on a light one."""
    r, g, b = to_rgb(background)
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.55 else "black"


def _targets(ax: Axes, report: BenchReport, layout: _Layout, group: int, concurrency: int) -> float:
    """The scenario's rate targets at this concurrency as red dashed lines (met: solid); the
    highest one (to size the axis). Their labels go in the legend, off the data."""
    highest = 0.0
    for target in report.scenario.targets:
        level = _target_level(target, layout, concurrency)
        if level is None or not layout.of(target.variant, concurrency):
            continue
        met = _status(report.checks, target, concurrency) == "met"
        ax.hlines(level, group - 0.45, group + 0.45, color=_TARGET_COLOR,
                  linestyle="-" if met else "--", linewidth=1.5)  # fmt: skip
        highest = max(highest, level)
    return highest


def _legend(ax: Axes, report: BenchReport, layout: _Layout, off_scale: list[str]) -> None:
    """One entry per variant (its colour in every panel), then the targets and the ceiling:
    outside the axes, on the right, so it never covers data."""
    handles: list[Artist] = [Patch(color=layout.colors[v], label=v) for v in layout.variants]
    others: list[Artist] = []
    for target in report.scenario.targets:
        drawn = [c for c in layout.concurrencies if _target_level(target, layout, c) is not None]
        ran = [c for c in layout.concurrencies if layout.of(target.variant, c)]
        statuses = ", ".join(f"c={c}: {_status(report.checks, target, c)}" for c in ran)
        if drawn:
            label = textwrap.fill(f"target: {target.label} ({statuses}; solid where met)", 30)
            handles.append(Line2D([], [], color=_TARGET_COLOR, linestyle="--", label=label))
        else:  # not a rate: its status only, as text
            label = textwrap.fill(f"check: {target.label} ({statuses or 'not run'})", 30)
            others.append(Line2D([], [], linestyle="none", label=label))
    if off_scale:
        label = textwrap.fill("ceiling, off the scale: " + ", ".join(off_scale), 30)
        others.append(Line2D([], [], linestyle="none", label=label))
    elif any(r.ceiling_per_s is not None for r in report.runs):
        handles.append(Line2D([], [], color="black", linestyle=":", label="ceiling"))
    handles += others
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize="medium")  # fmt: skip


def _differs(api: Pooled, e2e: Pooled) -> bool:
    for q in (0.5, 0.9, 0.99):
        a, e = api.quantile(q), e2e.quantile(q)
        if abs(e - a) > _DIFFERS * max(a, 1e-9) and abs(e - a) > 0.5:
            return True
    return False


def _cdf_line(ax: Axes, pooled: Pooled, color: str, dashed: bool) -> None:
    xs = [max(v, 0.01) for v in pooled.ms]
    ax.plot(xs, pooled.fraction, color=color, linestyle="--" if dashed else "-",
            linewidth=1.6)  # fmt: skip
    for q, marker in ((0.5, "o"), (0.99, "D")):
        ax.plot([max(pooled.quantile(q), 0.01)], [q], marker=marker, color=color,
                markersize=5, markeredgecolor="white", linestyle="none")  # fmt: skip


def _latency(ax: Axes, layout: _Layout, latency: LatencyFile | None, concurrency: int) -> None:
    pooled = 0 if latency is None else layout.rounds
    title = f"{TITLE_LATENCY}, concurrency {concurrency}"
    ax.set_title(title + (f" ({pooled} rounds pooled)" if pooled > 1 else ""), loc="left")
    if latency is None:
        ax.text(0.5, 0.5, "no latency.json in the run directory", transform=ax.transAxes,
                ha="center", va="center")  # fmt: skip
        return
    for variant in layout.variants:
        mine = [r for r in latency.runs if r.variant == variant and r.concurrency == concurrency]
        api = pool([r.api for r in mine])
        e2e = pool([r.e2e for r in mine])
        if api is not None:
            _cdf_line(ax, api, layout.colors[variant], dashed=False)
        if e2e is not None and (api is None or _differs(api, e2e)):
            _cdf_line(ax, e2e, layout.colors[variant], dashed=True)
    ax.set_xscale("log")
    _plain_log_ticks(ax)
    ax.set_yscale("logit")
    ax.set_ylim(_CDF_BOTTOM, _CDF_TOP)
    ax.set_yticks(_CDF_TICKS, _CDF_TICK_LABELS)
    ax.minorticks_off()
    for q in (0.5, 0.99):
        ax.axhline(q, color="grey", linewidth=0.6, alpha=0.6)
    ax.set_xlabel("ms (log); solid: API call, dashed: end to end where it differs")
    ax.set_ylabel("share of jobs at or below")
    ax.grid(axis="x", which="both", alpha=0.25)


def _plain_log_ticks(ax: Axes) -> None:
    """Milliseconds as plain numbers (0.5, 20, 1,000) at 1-2-5 steps when the data spans
    three decades or less (else one per decade): a narrow range (200 to 1,300 ms) would
    otherwise show a single tick."""
    low, high = ax.get_xlim()
    decades = math.log10(max(high, 1e-9) / max(low, 1e-9))
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _duration(run: RunMetrics) -> float:
    last = run.series[-1].t_s + run.bin_s if run.series else 0.0
    return run.elapsed_s if run.elapsed_s > 0 else last


def _seconds(value: float) -> str:
    return f"{value:,.1f} s" if value >= 1.0 else f"{1000.0 * value:.0f} ms"


def _over_time(ax: Axes, layout: _Layout, concurrency: int) -> None:
    durations: list[str] = []
    # each series' last bin is divided by its real (often tiny) width: it can spike far above
    # the rest, so the axis is sized on the other bins
    body = [0.0]
    for variant in layout.variants:
        first = [r for r in layout.of(variant, concurrency) if r.round == 0]
        if not first or not first[0].series:
            continue
        run = first[0]
        end = max(_duration(run), run.series[-1].t_s)
        xs = [100.0 * p.t_s / end for p in run.series] + [100.0]
        ys = [p.jobs_per_s for p in run.series]
        ax.step(xs, [*ys, ys[-1]], where="post", color=layout.colors[variant], linewidth=1.6)
        body += ys[:-1] or ys
        durations.append(f"{variant} {_seconds(run.elapsed_s)}")
    ax.set_title(f"{TITLE_OVER_TIME}, concurrency {concurrency}\n100 % = "
                 + ", ".join(durations), loc="left")  # fmt: skip
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 1.15 * max(body) or 1.0)
    ax.set_xlabel("% of each run's own duration")
    ax.set_ylabel("completed jobs/s")
    ax.grid(alpha=0.3)


def _learned(ax: Axes, layout: _Layout, runs: list[RunMetrics], limit_rpm: float | None) -> None:
    """The learned request rate (solid) and what the server let through (dotted) against its
    limit; the share of 429s per bin as grey bars on the right-hand axis."""
    share_ax = ax.twinx()
    for run in runs:
        color = layout.colors[run.variant]
        xs = [p.t_s for p in run.learned]
        ax.step(xs, [p.learned_rpm for p in run.learned], where="post", color=color)
        ax.step(xs, [p.accepted_rpm for p in run.learned], where="post", color=color,
                linestyle=":")  # fmt: skip
        if run is runs[0]:
            share_ax.bar(xs, [100.0 * p.share_429 for p in run.learned], width=0.9,
                         align="edge", color="grey", alpha=0.35)  # fmt: skip
    if limit_rpm is not None:
        ax.axhline(limit_rpm, color="black", linestyle="--")
    ax.set_zorder(share_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlabel("seconds from the start of the run")
    ax.set_ylabel("requests per minute")
    share_ax.set_ylabel("429s, % of calls in the bin")
    limit = f", limit {limit_rpm:g} rpm dashed" if limit_rpm is not None else ""
    ax.set_title(f"{TITLE_LEARNED} (solid), accepted rate (dotted), 429 share (grey bars)"
                 f"{limit}; c={runs[0].concurrency}, round 1", loc="left")  # fmt: skip
    ax.grid(alpha=0.3)


def _suptitle(report: BenchReport, layout: _Layout) -> str:
    s = report.scenario
    jobs = s.jobs or max((r.jobs for r in report.runs), default=0)
    concurrency = ", ".join(map(str, layout.concurrencies))
    rounds = f", {layout.rounds} rounds" if layout.rounds > 1 else ""
    when = (
        f"{report.started_at} UTC, {report.host.cpus} CPUs, load "
        f"{report.host.load_avg_1m_before:.2f} before"
    )
    return (
        f"bench {s.name}: {jobs:,} jobs per run, concurrency {concurrency}{rounds} ({when})\n"
        + textwrap.fill(s.description, 130)
    )


def build_figure(report: BenchReport, latency: LatencyFile | None) -> Figure:
    """The report's picture (the caller saves it, or a test inspects it)."""
    layout = _Layout(report)
    ncols = max(1, len(layout.concurrencies))
    # the learned rate matters where the server has a limit (without one it only climbs)
    first = layout.concurrencies[0] if layout.concurrencies else 0
    learned = [r for r in report.runs if r.learned and r.round == 0 and r.concurrency == first]
    learned = learned if report.scenario.sim.rpm is not None else []
    heights = [1.3, 1.2, 0.9] + ([0.9] if learned else [])
    fig = Figure(figsize=(max(12.0, 6.0 * ncols), 3.4 * sum(heights)), layout="constrained")
    # the headline (with its legend on the right) in a subfigure of its own, so the legend's
    # width does not narrow the panels below it
    outer = fig.add_gridspec(2, 1, height_ratios=[heights[0], sum(heights[1:])])
    top, rest = fig.add_subfigure(outer[0]), fig.add_subfigure(outer[1])
    _headline(top.add_subplot(), report, layout)
    grid = rest.add_gridspec(len(heights) - 1, ncols, height_ratios=heights[1:])
    for column, concurrency in enumerate(layout.concurrencies):
        _latency(rest.add_subplot(grid[0, column]), layout, latency, concurrency)
        _over_time(rest.add_subplot(grid[1, column]), layout, concurrency)
    if learned:
        _learned(rest.add_subplot(grid[2, :]), layout, learned, report.scenario.sim.rpm)
    fig.suptitle(_suptitle(report, layout), fontsize="large")
    return fig


def write_png(report: BenchReport, latency: LatencyFile | None, path: Path) -> None:
    build_figure(report, latency).savefig(path, dpi=100)
