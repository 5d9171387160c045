"""The bench's reports: report.json (msgspec) and report.md, from the queue's finished rows.

Accuracy is the draw-0 score of each sample (so that modes compare pairwise on the same
samples); pass@k uses every draw of the samples whose k draws were all judged. Tokens and
cost per mode come from the engine's accounting of each call (answers and judges of that
mode; cached calls cost nothing).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from engine.evaluation import stats
from engine.evaluation.slices import slice_name, slices_of
from engine.evaluation.verdicts import parse_verdict, reply_text
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.job import Status, TerminalRow

if TYPE_CHECKING:
    from engine.evaluation.pipeline import EvaluatePipeline

SIMULATED_NOTE = "simulated: the figures measure the plumbing, not a model"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"


class ModeUsage(msgspec.Struct):
    calls: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class ModeResult(msgspec.Struct):
    mode: str
    scored: int
    accuracy: stats.Estimate | None
    pass_at_k: list[float]
    usage: ModeUsage


class SliceResult(msgspec.Struct):
    slice: str
    size: int  # samples in the slice
    accuracy: dict[str, stats.Estimate | None]  # by mode, draw 0


class EvalReport(msgspec.Struct):
    note: str | None
    command: str
    model: str
    judge_model: str
    seed: int
    split_seed: int
    n: int
    k: int
    answer_format: str
    template_version: str
    modes: list[ModeResult]
    comparisons: list[stats.Paired]
    slices: list[SliceResult] = msgspec.field(default_factory=list)


class Tally(msgspec.Struct):
    """What the rows say, by mode: scores[(sample, draw)] and usage."""

    scores: dict[str, dict[tuple[str, int], int]]
    usage: dict[str, ModeUsage]


def tally(rows: list[TerminalRow], modes: tuple[str, ...], prices: Mapping[str, Price]) -> Tally:
    scores: dict[str, dict[tuple[str, int], int]] = {m: {} for m in modes}
    usage = {m: ModeUsage() for m in modes}
    for row in rows:
        kind, mode, sample, draw = row.id.split(":")
        use = usage[mode]
        if row.status is Status.FAILED:
            use.failed += 1
            continue
        use.calls += 1
        use.prompt_tokens += row.prompt_tokens
        use.completion_tokens += row.completion_tokens
        if row.cached:
            use.cached += 1
        elif row.model in prices:
            use.cost_usd += prices[row.model].cost(row.prompt_tokens, row.completion_tokens)
        if kind == "judge" and row.result is not None:
            scores[mode][(sample, int(draw))] = parse_verdict(reply_text(row.result)).score
    return Tally(scores, usage)


def build_report(pipeline: EvaluatePipeline, counted: Tally) -> EvalReport:
    s = pipeline.settings
    samples = sorted(pipeline.samples)
    results: list[ModeResult] = []
    firsts: dict[str, dict[str, int]] = {}
    for mode in s.modes:
        scores = counted.scores[mode]
        first = {x: scores[(x, 0)] for x in samples if (x, 0) in scores}
        firsts[mode] = first
        estimate = stats.accuracy(list(first.values()), s.seed) if first else None
        full = [
            (s.k, sum(scores[(x, d)] for d in range(s.k)))
            for x in samples
            if all((x, d) in scores for d in range(s.k))
        ]
        curve = stats.pass_at_k_curve(full, s.k) if full else []
        results.append(ModeResult(mode, len(first), estimate, curve, counted.usage[mode]))
    comparisons = []
    for a, b in itertools.combinations(s.modes, 2):
        both = [x for x in samples if x in firsts[a] and x in firsts[b]]
        if both:
            comparisons.append(
                stats.paired_difference(
                    a, [firsts[a][x] for x in both], b, [firsts[b][x] for x in both], s.seed
                )
            )
    report = EvalReport(
        SIMULATED_NOTE if pipeline.simulated else None,
        pipeline.command,
        s.model,
        s.judge_model,
        s.seed,
        s.split_seed,
        s.n,
        s.k,
        s.answer_format,
        s.template_version,
        results,
        comparisons,
    )
    report.slices = slice_results(pipeline, firsts)
    return report


def slice_results(
    pipeline: EvaluatePipeline, firsts: dict[str, dict[str, int]]
) -> list[SliceResult]:
    results = []
    for group in slices_of(pipeline.where):
        members = [
            x.id for x in pipeline.samples.values() if all(c.matches(x.attributes) for c in group)
        ]
        accuracy: dict[str, stats.Estimate | None] = {}
        for mode, first in firsts.items():
            scores = [first[x] for x in members if x in first]
            accuracy[mode] = stats.accuracy(scores, pipeline.settings.seed) if scores else None
        results.append(SliceResult(slice_name(group), len(members), accuracy))
    return results


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render_md(report: EvalReport) -> str:
    lines = ["# PERSONA Bench", ""]
    if report.note:
        lines += [f"**{report.note}**", ""]
    lines += [
        f"- command: `{report.command}`",
        f"- model: `{report.model}`, judge: `{report.judge_model}`, answer format: "
        f"{report.answer_format}, templates: `{report.template_version}`",
        f"- samples: {report.n}, draws per sample (k): {report.k}, seed: {report.seed}, "
        f"prompt split seed: {report.split_seed}",
        "",
        "## Accuracy per mode (draw 0; bootstrap 95 % interval)",
        "",
        "| mode | scored | accuracy % | SE % | 95 % interval | calls | cached | failed "
        "| tokens in | tokens out | cost USD |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report.modes:
        a, u = m.accuracy, m.usage
        figures = (
            "| — | — | — "
            if a is None
            else (f"| {_pct(a.value)} | {_pct(a.se)} | [{_pct(a.low)}, {_pct(a.high)}] ")
        )
        lines.append(
            f"| {m.mode} | {m.scored} {figures}| {u.calls} | {u.cached} | {u.failed} "
            f"| {u.prompt_tokens} | {u.completion_tokens} | {u.cost_usd:.4f} |"
        )
    lines += _comparison_lines(report) + _pass_lines(report) + _slice_lines(report)
    if report.note:
        lines += ["", f"_{report.note}_"]
    return "\n".join(lines) + "\n"


def _comparison_lines(report: EvalReport) -> list[str]:
    if not report.comparisons:
        return []
    lines = [
        "",
        "## Modes compared on the same samples",
        "",
        "| a | b | n | a - b (pp) | paired bootstrap 95 % | a only | b only | McNemar exact p |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for c in report.comparisons:
        lines.append(
            f"| {c.a} | {c.b} | {c.n} | {_pct(c.difference)} | [{_pct(c.low)}, {_pct(c.high)}] "
            f"| {c.a_only} | {c.b_only} | {c.p_value:.3g} |"
        )
    return lines


def _pass_lines(report: EvalReport) -> list[str]:
    if report.k < 2:
        return []
    ks = range(1, report.k + 1)
    lines = [
        "",
        "## pass@k (unbiased estimator, Chen et al. 2021), %",
        "",
        "| mode | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|" + "---:|" * report.k,
    ]
    for m in report.modes:
        lines.append(f"| {m.mode} | " + " | ".join(_pct(v) for v in m.pass_at_k) + " |")
    return lines


def _slice_lines(report: EvalReport) -> list[str]:
    if not report.slices:
        return []
    modes = [m.mode for m in report.modes]
    lines = [
        "",
        "## Slices (--where; accuracy %, draw 0, 95 % interval)",
        "",
        "| slice | samples | " + " | ".join(modes) + " |",
        "|---|---:|" + "---|" * len(modes),
    ]
    for s in report.slices:
        cells = [
            "—"
            if (a := s.accuracy.get(m)) is None
            else f"{_pct(a.value)} [{_pct(a.low)}, {_pct(a.high)}]"
            for m in modes
        ]
        lines.append(f"| {s.slice} | {s.size} | " + " | ".join(cells) + " |")
    return lines


async def write_reports(
    pipeline: EvaluatePipeline, queue: WorkQueue, run_dir: Path, prices: Mapping[str, Price]
) -> str:
    rows = [row async for row in queue.iter_terminal()]
    report = build_report(pipeline, tally(rows, pipeline.settings.modes, prices))
    (run_dir / REPORT_JSON).write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    (run_dir / REPORT_MD).write_text(render_md(report))
    from engine.evaluation.plot import write_png  # noqa: PLC0415 (matplotlib: only to draw)

    write_png(report, run_dir / REPORT_PNG)
    summary = ", ".join(
        f"{m.mode} {_pct(m.accuracy.value)} %" for m in report.modes if m.accuracy is not None
    )
    note = f" ({SIMULATED_NOTE})" if report.note else ""
    return f"accuracy: {summary}{note} -> {run_dir / REPORT_MD}"
