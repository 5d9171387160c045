"""report.png of a bench run: accuracy per mode with its 95 % interval, and pass@k curves.

matplotlib's object API on a bare `Figure` (the Agg canvas), as bench/plot.py: no pyplot.
A simulated run says so in the figure's title.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from engine.evaluation.report import EvalReport


def _accuracy(ax: Axes, report: EvalReport) -> None:
    modes = [m for m in report.modes if m.accuracy is not None]
    values = [100 * m.accuracy.value for m in modes if m.accuracy is not None]
    below = [100 * (m.accuracy.value - m.accuracy.low) for m in modes if m.accuracy is not None]
    above = [100 * (m.accuracy.high - m.accuracy.value) for m in modes if m.accuracy is not None]
    xs = list(range(len(modes)))
    ax.bar(xs, values, yerr=[below, above], capsize=6, color=[f"C{i}" for i in xs])
    ax.set_xticks(xs, [m.mode.replace("_", "\n") for m in modes])
    ax.set_ylabel("accuracy % (no revision needed)")
    ax.set_ylim(0, 100)
    ax.set_title(f"accuracy per mode, n = {report.n} (95 % bootstrap interval)")


def _pass_at_k(ax: Axes, report: EvalReport) -> None:
    for index, mode in enumerate(report.modes):
        if mode.pass_at_k:
            ks = range(1, len(mode.pass_at_k) + 1)
            values = [100 * v for v in mode.pass_at_k]
            ax.plot(ks, values, marker="o", label=mode.mode, color=f"C{index}")
    ax.set_xticks(range(1, report.k + 1))
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k %")
    ax.set_ylim(0, 100)
    ax.set_title("pass@k (unbiased estimator)")
    ax.legend()


def write_png(report: EvalReport, path: Path) -> None:
    panels = 2 if report.k > 1 else 1
    figure = Figure(figsize=(6.5 * panels, 4.8), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    _accuracy(axes[0], report)
    if panels == 2:
        _pass_at_k(axes[1], report)
    title = f"PERSONA Bench: {report.model} judged by {report.judge_model}"
    figure.suptitle(title + (f"\n{report.note}" if report.note else ""))
    figure.savefig(path, dpi=100)
