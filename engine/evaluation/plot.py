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


def _loo(ax: Axes, report: EvalReport) -> None:
    names = [r.attribute for r in report.loo]
    values = [r.agreement.kappa for r in report.loo]
    below = [r.agreement.kappa - r.agreement.kappa_low for r in report.loo]
    above = [r.agreement.kappa_high - r.agreement.kappa for r in report.loo]
    ys = list(range(len(names)))
    ax.barh(ys, values, xerr=[below, above], capsize=4, color="C4")
    ax.set_yticks(ys, names)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Cohen's kappa, full persona vs without the attribute")
    ax.set_title("leave one out (95 % bootstrap interval)")


def write_png(report: EvalReport, path: Path) -> None:
    drawers = [_accuracy]
    if report.k > 1:
        drawers.append(_pass_at_k)
    if report.loo:
        drawers.append(_loo)
    figure = Figure(figsize=(6.5 * len(drawers), 4.8), layout="constrained")
    for ax, draw in zip(figure.subplots(1, len(drawers), squeeze=False)[0], drawers, strict=True):
        draw(ax, report)
    title = f"PERSONA Bench: {report.model} judged by {report.judge_model}"
    figure.suptitle(title + (f"\n{report.note}" if report.note else ""))
    figure.savefig(path, dpi=100)
