"""`status` and `export`: read the queue, print or rewrite."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec

from engine import pipelines
from engine.abandoned import abandoned_calls
from engine.batch.status import BatchSummary, batch_summary, render_batches
from engine.command_line import COMMAND_KEY
from engine.errors import SettingsError, UserError, exit_status_of, storage_error_of
from engine.learned_rates import META_KEY, learned_from_meta, render_learned
from engine.output import OutputFiles
from engine.pipeline import PIPELINE_KEY, RESULTS_FORMAT, chosen_formats
from engine.prices import Price, load_prices
from engine.queue.backends import open_queue, run_exists
from engine.rundir import QUEUE_FILE, lock_run_dir
from ratelimits.learned import LearnedRate
from schemas.job import ALL_STATUSES, QueueCounts, Status


class StatusReport(msgspec.Struct):
    run_dir: str
    total: int
    by_status: dict[str, int]
    by_stage: dict[str, dict[str, int]]
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float | None
    by_model: dict[str, ModelCost]
    cost_usd: float | None  # paid calls only; None when a model has no price
    abandoned_calls: int = 0  # cut off by the adaptive deadline and retried: may be paid twice
    # the last run's learned request rate per model, calls answered and 429s among them
    rate_limits: list[LearnedRate] = msgspec.field(default_factory=list)
    # failed jobs a rerun with --retry-failed would run again, and that command (issue 16)
    retry_failed: RetryFailed | None = None
    # issue 13: a run through the Batch API (None: it never used it); `cost_usd` then counts
    # the calls made through batches at the batch price
    batch: BatchSummary | None = None


class RetryFailed(msgspec.Struct):
    jobs: int
    command: str


class ModelCost(msgspec.Struct):
    done: int
    cached: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    cost_if_batch_usd: float | None  # the same tokens at the Batch API's 50 % price


def model_costs(counts: QueueCounts, prices: dict[str, Price]) -> dict[str, ModelCost]:
    costs = {}
    for model, usage in counts.by_model.items():
        price = prices.get(model)
        cost = price.cost(usage.paid_prompt_tokens, usage.paid_completion_tokens) if price else None
        costs[model] = ModelCost(
            done=usage.done,
            cached=usage.cached,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=None if cost is None else round(cost, 6),
            cost_if_batch_usd=None
            if cost is None
            else round(cost * price.batch_share, 6)
            if price
            else None,
        )
    return costs


def status_report(
    run_dir: Path,
    counts: QueueCounts,
    prices: dict[str, Price],
    rate_limits: list[LearnedRate] | None = None,
) -> StatusReport:
    elapsed = None
    if counts.first_started_at is not None and counts.last_finished_at is not None:
        elapsed = round(counts.last_finished_at - counts.first_started_at, 3)
    by_model = model_costs(counts, prices)
    costs = [m.cost_usd for m in by_model.values()]
    return StatusReport(
        run_dir=str(run_dir),
        total=counts.total,
        by_status={s.value: counts.count(s) for s in ALL_STATUSES},
        by_stage=counts.by_stage,
        attempts=counts.attempts,
        prompt_tokens=counts.prompt_tokens,
        completion_tokens=counts.completion_tokens,
        elapsed_s=elapsed,
        by_model=by_model,
        cost_usd=None if None in costs else round(sum(c or 0.0 for c in costs), 6),
        rate_limits=rate_limits or [],
    )


def render_status(report: StatusReport) -> str:
    lines = [f"run {report.run_dir}: {report.total} jobs"]
    lines.append("  " + "  ".join(f"{k} {v}" for k, v in report.by_status.items()))
    for stage, by in sorted(report.by_stage.items()):
        lines.append(f"  stage {stage}: " + "  ".join(f"{k} {v}" for k, v in sorted(by.items())))
    lines.append(
        f"  attempts {report.attempts}  tokens {report.prompt_tokens} prompt + "
        f"{report.completion_tokens} completion"
    )
    for model, m in sorted(report.by_model.items()):
        cost = (
            "no price"
            if m.cost_usd is None
            else f"${m.cost_usd:.4f} (batch ${m.cost_if_batch_usd:.4f})"
        )
        lines.append(
            f"  model {model}: {m.done} done ({m.cached} cached)  "
            f"{m.prompt_tokens}+{m.completion_tokens} tokens  cost {cost}"
        )
    if report.cost_usd is not None:
        lines.append(f"  cost ${report.cost_usd:.4f} (paid calls; cached ones cost nothing)")
    if report.abandoned_calls:
        lines.append(
            f"  abandoned calls {report.abandoned_calls} (past the adaptive deadline, retried; "
            "each may have been paid twice)"
        )
    if report.elapsed_s is not None:
        lines.append(f"  elapsed {report.elapsed_s:.1f} s (first call to last finish)")
    lines += render_learned(report.rate_limits)
    if report.retry_failed is not None:
        lines.append(
            f"  {report.retry_failed.jobs} failed jobs; to run them again: "
            f"{report.retry_failed.command}  (=CODE,... picks some by HTTP status or error code)"
        )
    if report.batch is not None:
        lines += render_batches(report.batch)
    return "\n".join(lines)


def retry_failed_hint(run_dir: Path, failed: int, command: str | None) -> RetryFailed | None:
    """How to run the failed jobs again: the run's own command with --retry-failed."""
    if not failed:
        return None
    base = command or f"python -m engine generate --run-dir {shlex.quote(str(run_dir))}"
    return RetryFailed(jobs=failed, command=f"{base} --retry-failed")


async def status_command(run_dir: Path, as_json: bool, prices_path: Path | None = None) -> int:
    return await _reporting_errors(_status(run_dir, as_json, prices_path))


async def export_command(
    run_dir: Path, prices_path: Path | None = None, formats: Sequence[str] | None = None
) -> int:
    return await _reporting_errors(_export(run_dir, prices_path, formats))


async def _reporting_errors(work: Coroutine[Any, Any, int]) -> int:
    try:
        return await work
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_status_of(exc)
    except OSError as exc:  # a full or read-only disk while exporting: exit 5, one line
        error = storage_error_of(exc, Path("."))
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return exit_status_of(error)


def _existing_run(run_dir: Path) -> None:
    if not run_exists(run_dir):
        raise SettingsError(f"no run at {run_dir} (no {QUEUE_FILE})")


async def _status(run_dir: Path, as_json: bool, prices_path: Path | None) -> int:
    _existing_run(run_dir)
    prices = load_prices(prices_path)
    queue = await open_queue(run_dir)
    try:
        learned = learned_from_meta(await queue.get_meta(META_KEY))
        counts = await queue.counts()
        report = status_report(run_dir, counts, prices, learned)
        report.abandoned_calls = await abandoned_calls(queue)
        command = await queue.get_meta(COMMAND_KEY)
        report.retry_failed = retry_failed_hint(run_dir, counts.count(Status.FAILED), command)
        report.batch = await batch_summary(queue, prices, time.time())
        if report.batch is not None and report.cost_usd is not None:
            online, batch = report.batch.online_equivalent_usd, report.batch.cost_usd
            if online is not None and batch is not None:
                report.cost_usd = round(report.cost_usd - online + batch, 6)
    finally:
        await queue.close()
    print(msgspec.json.encode(report).decode() if as_json else render_status(report))
    return 0


async def _export(run_dir: Path, prices_path: Path | None, asked: Sequence[str] | None) -> int:
    _existing_run(run_dir)
    prices = load_prices(prices_path)
    with lock_run_dir(run_dir):
        queue = await open_queue(run_dir)
        try:
            pipeline = await pipelines.resume(await queue.get_meta(PIPELINE_KEY), queue)
            formats = chosen_formats(pipeline, asked)
            live_results = RESULTS_FORMAT in pipeline.default_formats
            output = OutputFiles(run_dir, prices=prices, with_results=live_results)
            try:
                await output.rebuild(queue)
                if RESULTS_FORMAT in formats:
                    await output.snapshot_results(queue)
            finally:
                output.close()
            counts = await queue.counts()
            said = await pipeline.export(queue, run_dir, prices, formats)
        finally:
            await queue.close()
    if RESULTS_FORMAT in formats:
        done, failed = counts.count(Status.DONE), counts.count(Status.FAILED)
        print(f"exported {done} results and {failed} errors")
    else:
        print(f"exported {counts.count(Status.FAILED)} errors")
    if said:
        print(said)
    return 0
