"""The report of one bench run: its structure (msgspec), report.json and report.md.

The PNG is drawn by bench/plot.py. Every figure in the markdown comes from the JSON report.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Literal

import msgspec

from bench.learned import LearnedPoint, coarser
from bench.measure import Percentiles, SeriesPoint, compare
from bench.scenarios import Scenario, Target
from engine.prices import Price

CheckStatus = Literal["met", "not met", "pending"]


class RunMetrics(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One variant at one concurrency. Rates count completed jobs (200 answers for `bare`)."""

    variant: str
    concurrency: int
    jobs: int  # submitted
    done: int
    failed: int
    elapsed_s: float  # the client's own measure: the engine's run loop, the bare client's fire
    process_wall_s: float  # the whole process, start-up and enqueueing included
    rate_per_s: float
    tokens_per_s: float  # prompt + completion tokens served / elapsed_s
    cpu_s: float  # the client process, start-up included
    cpu_ms_per_job: float  # cpu_s / done
    peak_rss_mb: float
    api_latency: Percentiles | None  # the successful call alone
    e2e_latency: Percentiles | None  # first attempt's start to finish (retries included)
    retries: int
    http_429: int
    rate_429_fraction: float  # 429 answers / requests received by the simulator
    paid_calls: int  # valid completions the simulator served
    duplicate_paid_calls: int  # served more than once for the same request body
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    batch_cost_usd: float
    by_status: dict[str, int]
    bin_s: float
    series: list[SeriesPoint]
    ceiling_per_s: float | None = None
    binding_limit: str | None = None
    efficiency: float | None = None  # rate / ceiling
    rate_vs_bare: float | None = None  # rate / the bare client's rate in the same round
    # (elapsed_s - the outage's length) / elapsed_s of the engine-fault-free run in the same
    # round: <= 1.10 means "no longer than the outage plus 10 % over the fault-free run"
    time_vs_fault_free: float | None = None
    round: int = 0  # which of the repeated rounds (--repeat)
    # (cpu_s - the CPU it had used when its first request arrived) / done: the cost per job
    # without start-up (imports, reading and enqueueing the requests)
    cpu_ms_per_job_net: float | None = None
    # the engine's learned request rate over the run (per second), when it learned one
    learned: list[LearnedPoint] = msgspec.field(default_factory=list)


class CheckResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    label: str
    target: str  # e.g. "efficiency >= 0.95"
    variant: str
    concurrency: int | None
    measured: float | None
    status: CheckStatus
    note: str = ""


class HostInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cpus: int
    load_avg_1m_before: float
    python: str
    platform: str


class BenchReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    scenario: Scenario
    command: str
    started_at: str  # ISO 8601, UTC
    finished_at: str
    host: HostInfo
    price_model: str
    price: Price
    runs: list[RunMetrics]
    checks: list[CheckResult]
    unavailable: str | None = None  # why the scenario could not run (pending engine support)


report_decoder = msgspec.json.Decoder(BenchReport)


def _target_text(target: Target) -> str:
    return f"{target.metric} {target.op} {target.threshold:g}"


def evaluate(targets: tuple[Target, ...], runs: list[RunMetrics]) -> list[CheckResult]:
    """Each target at each concurrency its variant ran at, on the median over the repeated
    rounds ("pending" when nothing was measured)."""
    results: list[CheckResult] = []
    for target in targets:
        by_concurrency: dict[int, list[float | None]] = {}
        for run in runs:
            if run.variant == target.variant:
                by_concurrency.setdefault(run.concurrency, []).append(getattr(run, target.metric))
        if not by_concurrency:
            results.append(_pending(target, "not measured"))
        for concurrency, found in by_concurrency.items():
            values = [float(v) for v in found if v is not None]
            if not values:
                results.append(_pending(target, "no value (missing baseline?)", concurrency))
                continue
            value = statistics.median(values)
            met = compare(value, target.op, target.threshold)
            note = f"median of {len(values)}: " + ", ".join(f"{v:g}" for v in values)
            results.append(
                CheckResult(
                    target.label,
                    _target_text(target),
                    target.variant,
                    concurrency,
                    round(value, 4),
                    "met" if met else "not met",
                    note if len(values) > 1 else "",
                )
            )
    return results


def _pending(target: Target, note: str, concurrency: int | None = None) -> CheckResult:
    text = _target_text(target)
    return CheckResult(target.label, text, target.variant, concurrency, None, "pending", note)


def write_json(report: BenchReport, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _lat(p: Percentiles | None) -> str:
    if p is None:
        return "-"
    return f"{p.p50_ms:.1f} / {p.p90_ms:.1f} / {p.p99_ms:.1f} / {p.max_ms:.1f}"


_RUN_HEADER = (
    "| variant | conc. | done | failed | jobs/s | vs bare | efficiency (ceiling) | tokens/s "
    "| API ms p50/p90/p99/max | end-to-end ms p50/p90/p99/max | CPU ms/job (net) | peak RSS MB "
    "| 429s | retries | dup. paid | cost $ (batch $) |"
)


def _run_row(r: RunMetrics) -> str:
    ceiling = "" if r.ceiling_per_s is None else f" ({r.ceiling_per_s:,.1f}/s {r.binding_limit})"
    cost = f"{r.cost_usd:.4f} ({r.batch_cost_usd:.4f})"
    name = r.variant + (f" #{r.round + 1}" if r.round else "")
    cpu = f"{_num(r.cpu_ms_per_job, 3)} ({_num(r.cpu_ms_per_job_net, 3)})"
    cells = (
        name, str(r.concurrency), str(r.done), str(r.failed), _num(r.rate_per_s),
        _num(r.rate_vs_bare, 2), _pct(r.efficiency) + ceiling, _num(r.tokens_per_s, 0),
        _lat(r.api_latency), _lat(r.e2e_latency), cpu,
        _num(r.peak_rss_mb), str(r.http_429), str(r.retries), str(r.duplicate_paid_calls), cost,
    )  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def render_markdown(report: BenchReport) -> str:
    s = report.scenario
    lines = [
        f"# bench: {s.name}",
        "",
        f"{s.description}.",
        "",
        f"- command: `{report.command}`",
        f"- run: {report.started_at} → {report.finished_at} (UTC); "
        f"{report.host.cpus} CPUs, load {report.host.load_avg_1m_before:.2f} before; "
        f"Python {report.host.python}",
        f"- jobs {s.jobs}, concurrency {', '.join(map(str, s.concurrency))}, seed {s.seed}; "
        f"cost priced as `{report.price_model}` (${report.price.input_per_mtok}/"
        f"${report.price.output_per_mtok} per M tokens in/out, as of {report.price.as_of}); "
        "batch = Batch API price (-50 %)",
        "",
    ]
    if report.unavailable:
        lines += [f"**Not run: {report.unavailable}**", ""]
    if report.runs:
        separator = "|" + "---|" * _RUN_HEADER.count(" | ") + "---|"
        lines += [_RUN_HEADER, separator, *(_run_row(r) for r in report.runs), ""]
    if report.checks:
        lines += [
            "| check | target | variant | conc. | measured | status |",
            "|---|---|---|---|---|---|",
        ]
        for c in report.checks:
            measured = "-" if c.measured is None else f"{c.measured:g}"
            status = c.status + (f" ({c.note})" if c.note else "")
            conc = "-" if c.concurrency is None else str(c.concurrency)
            lines.append(
                f"| {c.label} | `{c.target}` | {c.variant} | {conc} | {measured} | {status} |"
            )
        lines.append("")
    lines += _learned_table(report.runs, report.scenario.sim.rpm)
    return "\n".join(lines)


def _learned_table(runs: list[RunMetrics], limit_rpm: float | None) -> list[str]:
    """The learned rate over time: utilisation of the limit and the share of 429s, the first
    10 s second by second, then per 10 s."""
    lines: list[str] = []
    for r in runs:
        if not r.learned:
            continue
        points = r.learned[:10] + coarser(r.learned[10:], 10, limit_rpm)
        lines += [
            f"learned rate over time, {r.variant} c={r.concurrency} (the learned rpm at the "
            "end of each span):",
            "",
            "| t (s) | learned rpm | accepted rpm | utilisation | 429 share |",
            "|---|---|---|---|---|",
        ]
        for p in points:
            lines.append(
                f"| {p.t_s:g} | {p.learned_rpm:.0f} | {p.accepted_rpm:.0f} | "
                f"{_pct(p.utilisation)} | {_pct(p.share_429)} |"
            )
        lines.append("")
    return lines


def write_markdown(report: BenchReport, path: Path) -> None:
    path.write_text(render_markdown(report))
