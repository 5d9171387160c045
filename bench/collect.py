"""From what one variant left behind (output files, log summary, simulator counters) to its
`RunMetrics`: `read_engine_jobs` reads the engine's JSONL files; `engine_metrics` and
`bare_metrics` are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from bench.bare import BareResult
from bench.measure import (
    BATCH_DISCOUNT,
    Ceiling,
    ceiling,
    cost_usd,
    efficiency,
    pick_bin_s,
    rate_series,
    summarize,
)
from bench.report import RunMetrics
from engine.prices import Price


class _EngineMeta(msgspec.Struct, gc=False):
    attempts: int = 1
    latency_ms: float | None = None
    elapsed_ms: float | None = None
    finished_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _OutputLine(msgspec.Struct, gc=False):
    """The part of a results.jsonl / errors.jsonl line the bench reads (the rest is skipped)."""

    custom_id: str
    engine: _EngineMeta | None = None


_line_decoder = msgspec.json.Decoder(_OutputLine)


class JobColumns:
    """Per-job figures as parallel columns (cheap to hold for 317,200 jobs)."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.retries = 0
        self.api_ms: list[float] = []
        self.e2e_ms: list[float] = []
        self.started_at: list[float] = []  # epoch s of the first attempt's start
        self.finished_at: list[float] = []  # epoch s
        self.tokens: list[int] = []  # per finished_at entry

    def add(self, meta: _EngineMeta | None, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if meta is None:
            return
        self.retries += max(0, meta.attempts - 1)
        if ok and meta.latency_ms is not None:
            self.api_ms.append(meta.latency_ms)
        if meta.elapsed_ms is not None:
            self.e2e_ms.append(meta.elapsed_ms)
        if meta.finished_at is not None:
            self.finished_at.append(meta.finished_at)
            self.tokens.append(meta.prompt_tokens + meta.completion_tokens)
            if meta.elapsed_ms is not None:
                self.started_at.append(meta.finished_at - meta.elapsed_ms / 1000.0)


def read_engine_jobs(run_dir: Path) -> JobColumns:
    """Every job of results.jsonl (done) and errors.jsonl (failed) in `run_dir`."""
    columns = JobColumns()
    for name, ok in (("results.jsonl", True), ("errors.jsonl", False)):
        path = run_dir / name
        if not path.exists():
            continue
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    columns.add(_line_decoder.decode(line).engine, ok)
    return columns


class SimCounts(msgspec.Struct, frozen=True):
    """The simulator's `GET /stats` fields the bench reads (others ignored)."""

    requests_received: int
    completions_served: int
    duplicate_completions: int
    by_status: dict[str, int]
    prompt_tokens: int
    completion_tokens: int


def sim_counts(stats: dict[str, Any]) -> SimCounts:
    return msgspec.convert(stats, SimCounts)


class Context(msgspec.Struct, frozen=True):
    """What the metrics need from the scenario: its limits, latency, request size and price."""

    mean_latency_s: float
    rpm: int | None
    tpm: int | None
    max_tokens: int
    price: Price


class Measured(msgspec.Struct, frozen=True):
    """The client's own figures (the engine's `run.finished`, or the bare client's result)."""

    variant: str
    concurrency: int
    jobs: int
    done: int
    failed: int
    retries: int
    elapsed_s: float
    process_wall_s: float
    cpu_s: float
    peak_rss_mb: float
    startup_cpu_s: float | None = None  # CPU spent before the first request


def _ceiling(ctx: Context, concurrency: int, sim: SimCounts) -> Ceiling | None:
    """The scenario's ceiling; TPM counts each request's prompt + max_tokens (as the
    simulator's limiter does)."""
    served = sim.completions_served
    per_job = sim.prompt_tokens / served + ctx.max_tokens if served else None
    return ceiling(concurrency, ctx.mean_latency_s, ctx.rpm, ctx.tpm, per_job)


def build_metrics(
    m: Measured,
    sim: SimCounts,
    ctx: Context,
    latencies: tuple[Sequence[float], Sequence[float]],
    series_input: tuple[Sequence[float], Sequence[int] | None],
) -> RunMetrics:
    """The RunMetrics of one variant at one concurrency (pure).

    `latencies` = (API call ms, end-to-end ms); `series_input` = (finish times in s from the
    run's start, tokens per finish or None).
    """
    rate = m.done / m.elapsed_s if m.elapsed_s > 0 else 0.0
    limit = _ceiling(ctx, m.concurrency, sim)
    cost = cost_usd(sim.prompt_tokens, sim.completion_tokens, ctx.price)
    finished_s, tokens = series_input
    bin_s = pick_bin_s(max(finished_s, default=0.0))
    http_429 = sim.by_status.get("429", 0)
    paid_tokens = sim.prompt_tokens + sim.completion_tokens
    return RunMetrics(
        variant=m.variant,
        concurrency=m.concurrency,
        jobs=m.jobs,
        done=m.done,
        failed=m.failed,
        elapsed_s=round(m.elapsed_s, 3),
        process_wall_s=round(m.process_wall_s, 3),
        rate_per_s=round(rate, 2),
        tokens_per_s=round(paid_tokens / m.elapsed_s, 1) if m.elapsed_s > 0 else 0.0,
        cpu_s=round(m.cpu_s, 3),
        cpu_ms_per_job=round(1000.0 * m.cpu_s / max(1, m.done), 4),
        cpu_ms_per_job_net=_net_cpu_ms(m),
        peak_rss_mb=round(m.peak_rss_mb, 1),
        api_latency=summarize(latencies[0]),
        e2e_latency=summarize(latencies[1]),
        retries=m.retries,
        http_429=http_429,
        rate_429_fraction=round(http_429 / max(1, sim.requests_received), 6),
        paid_calls=sim.completions_served,
        duplicate_paid_calls=sim.duplicate_completions,
        prompt_tokens=sim.prompt_tokens,
        completion_tokens=sim.completion_tokens,
        cost_usd=round(cost, 6),
        batch_cost_usd=round(cost * BATCH_DISCOUNT, 6),
        by_status=sim.by_status,
        bin_s=bin_s,
        series=rate_series(finished_s, tokens, bin_s),
        ceiling_per_s=None if limit is None else round(limit.per_s, 2),
        binding_limit=None if limit is None else limit.binding,
        efficiency=None if limit is None else round(efficiency(rate, limit) or 0.0, 4),
    )


def _net_cpu_ms(m: Measured) -> float | None:
    if m.startup_cpu_s is None or m.done == 0:
        return None
    return round(1000.0 * max(0.0, m.cpu_s - m.startup_cpu_s) / m.done, 4)


def engine_metrics(
    m: Measured, sim: SimCounts, ctx: Context, jobs: JobColumns
) -> tuple[RunMetrics, tuple[list[float], list[float]]]:
    """The engine's metrics, and its (API, end-to-end) latency samples for the plot."""
    start = min(jobs.started_at, default=min(jobs.finished_at, default=0.0))
    finished_s = [t - start for t in jobs.finished_at]
    latencies = (jobs.api_ms, jobs.e2e_ms)
    return build_metrics(m, sim, ctx, latencies, (finished_s, jobs.tokens)), latencies


def bare_measured(result: BareResult, concurrency: int, jobs: int, wall_s: float) -> Measured:
    return Measured(
        variant="bare",
        concurrency=concurrency,
        jobs=jobs,
        done=result.ok,
        failed=jobs - result.ok,
        retries=0,
        elapsed_s=result.elapsed_s,
        process_wall_s=wall_s,
        cpu_s=result.cpu_s,
        peak_rss_mb=result.peak_rss_mb,
        startup_cpu_s=result.startup_cpu_s,
    )


def bare_metrics(
    result: BareResult, m: Measured, sim: SimCounts, ctx: Context
) -> tuple[RunMetrics, tuple[list[float], list[float]]]:
    """The bare client's metrics: no retries and no queue, so end-to-end = the call itself."""
    latencies = (result.latency_ms, result.latency_ms)
    return build_metrics(m, sim, ctx, latencies, (result.finished_s, None)), latencies
