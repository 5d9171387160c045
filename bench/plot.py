"""report.png: jobs/s and tokens/s over time, and the latency distributions (as CDFs).

Drawn with matplotlib's object API on a bare `Figure` (the Agg canvas): no pyplot, no global
backend selection, nothing configured at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.report import BenchReport, RunMetrics

Samples = dict[tuple[str, int, int], tuple[list[float], list[float]]]  # variant, conc., round
_MAX_CDF_POINTS = 2000


def _label(run: RunMetrics) -> str:
    return f"{run.variant} c={run.concurrency}" + (f" #{run.round + 1}" if run.round else "")


def _color(index: int) -> str:
    """One colour per run, the same in every panel (matplotlib's default cycle)."""
    return f"C{index % 10}"


def _steps(run: RunMetrics, tokens: bool) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for point in run.series:
        value = point.tokens_per_s if tokens else point.jobs_per_s
        if value is None:
            return [], []
        xs.append(point.t_s)
        ys.append(value)
    return xs, ys


def _cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """At most _MAX_CDF_POINTS (value, fraction) points of the empirical CDF."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return [], []
    step = max(1, n // _MAX_CDF_POINTS)
    indexes = [*range(0, n, step), n - 1]
    return [ordered[i] for i in indexes], [(i + 1) / n for i in indexes]


def _throughput(ax: Axes, runs: list[RunMetrics], tokens: bool) -> None:
    for index, run in enumerate(runs):
        xs, ys = _steps(run, tokens)
        if xs:
            ax.step(xs, ys, where="post", label=_label(run), color=_color(index))
    ax.set_xlabel("seconds from start")
    ax.set_ylabel("tokens/s" if tokens else "jobs/s")
    ax.set_title("tokens per second" if tokens else "completed jobs per second")
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize="small")


def _latency(ax: Axes, runs: list[RunMetrics], samples: Samples) -> None:
    for index, run in enumerate(runs):
        api, e2e = samples.get((run.variant, run.concurrency, run.round), ([], []))
        xs, ys = _cdf(api)
        if not xs:
            continue
        ax.plot(xs, ys, label=f"{_label(run)} API call", color=_color(index))
        if run.variant != "bare":
            xs, ys = _cdf(e2e)
            label = f"{_label(run)} end to end"
            ax.plot(xs, ys, linestyle="--", color=_color(index), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("latency distribution (CDF)")
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize="small")


def _learned(ax: Axes, runs: list[RunMetrics], limit_rpm: float | None) -> None:
    """The learned request rate and what the server let through, against its limit; the
    share of 429s per bin on the right-hand axis."""
    share_ax = ax.twinx()
    for index, run in enumerate(runs):
        xs = [p.t_s for p in run.learned]
        ax.step(xs, [p.learned_rpm for p in run.learned], where="post", color=_color(index),
                label=f"{_label(run)}: learned rpm")  # fmt: skip
        ax.step(xs, [p.accepted_rpm for p in run.learned], where="post", color=_color(index),
                linestyle=":", label=f"{_label(run)}: accepted rpm")  # fmt: skip
        share_ax.step(xs, [100.0 * p.share_429 for p in run.learned], where="post",
                      color="C3", alpha=0.5, label="429 share (%)")  # fmt: skip
    if limit_rpm is not None:
        ax.axhline(limit_rpm, color="black", linestyle="--", label=f"limit {limit_rpm:g} rpm")
    ax.set_xlabel("seconds from start")
    ax.set_ylabel("requests per minute")
    share_ax.set_ylabel("429s, % of calls in the bin")
    ax.set_title("learned request rate (no --rpm given)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")


def write_png(report: BenchReport, samples: Samples, path: Path) -> None:
    learned = [run for run in report.runs if run.learned]
    fig = Figure(figsize=(11, 16 if learned else 12), layout="constrained")
    axes = fig.subplots(4 if learned else 3, 1)
    jobs_ax, tokens_ax, latency_ax = axes[0], axes[1], axes[2]
    _throughput(jobs_ax, report.runs, tokens=False)
    _throughput(tokens_ax, report.runs, tokens=True)
    _latency(latency_ax, report.runs, samples)
    if learned:
        _learned(axes[3], learned, report.scenario.sim.rpm)
    fig.suptitle(f"bench {report.scenario.name} ({report.started_at})")
    fig.savefig(path, dpi=90)
