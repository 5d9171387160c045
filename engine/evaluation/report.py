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


class LooResult(msgspec.Struct):
    """The judge's labels with the full persona against those without `attribute`."""

    attribute: str
    agreement: stats.Agreement  # kappa with its interval, over (mode, sample), draw 0
    accuracy_full: float
    accuracy_without: float
    change: float  # accuracy without the attribute minus with it


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
    loo: list[LooResult] = msgspec.field(default_factory=list)


class Tally(msgspec.Struct):
    """What the rows say, by mode: scores[(sample, draw)] and usage."""

    scores: dict[str, dict[tuple[str, int], int]]
    usage: dict[str, ModeUsage]
    loo: dict[int, dict[tuple[str, str], int]]  # attribute index → (mode, sample) → draw-0 score


def tally(rows: list[TerminalRow], modes: tuple[str, ...], prices: Mapping[str, Price]) -> Tally:
    scores: dict[str, dict[tuple[str, int], int]] = {m: {} for m in modes}
    usage = {m: ModeUsage() for m in modes}
    loo: dict[int, dict[tuple[str, str], int]] = {}
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
        if row.result is None or kind == "answer":
            continue
        score = parse_verdict(reply_text(row.result)).score
        if kind == "judge":
            scores[mode][(sample, int(draw))] = score
        elif draw == "0":
            loo.setdefault(int(kind.removeprefix("loo")), {})[(mode, sample)] = score
    return Tally(scores, usage, loo)


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
    report.loo = loo_results(pipeline, counted, firsts)
    return report


def loo_results(
    pipeline: EvaluatePipeline, counted: Tally, firsts: dict[str, dict[str, int]]
) -> list[LooResult]:
    results = []
    for index, attribute in enumerate(pipeline.settings.loo):
        without = counted.loo.get(index, {})
        keys = [(m, x) for m, first in firsts.items() for x in first if (m, x) in without]
        if not keys:
            continue
        full = [firsts[m][x] for m, x in keys]
        less = [without[key] for key in keys]
        agreement = stats.agreement(full, less, pipeline.settings.seed)
        a_full, a_less = sum(full) / len(full), sum(less) / len(less)
        results.append(LooResult(attribute, agreement, a_full, a_less, a_less - a_full))
    return results


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
    lines += _loo_lines(report)
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


def _loo_lines(report: EvalReport) -> list[str]:
    if not report.loo:
        return []
    lines = [
        "",
        "## Leave one out (judge with vs without the attribute; draw 0, all modes)",
        "",
        "| attribute | n | kappa | 95 % interval | agreement % | accuracy change (pp) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in report.loo:
        a = r.agreement
        lines.append(
            f"| {r.attribute} | {a.n} | {a.kappa:.3f} | [{a.kappa_low:.3f}, "
            f"{a.kappa_high:.3f}] | {_pct(a.agreement)} | {_pct(r.change)} |"
        )
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
    return f"accuracy: {summary or 'nothing scored'}{note} -> {run_dir / REPORT_MD}"
