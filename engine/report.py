"""`status` and `export`: read the queue, print or rewrite."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from engine.learned_rates import META_KEY, learned_from_meta, render_learned
from engine.output import OutputFiles
from engine.persona.export import export_pairs
from engine.persona.run import is_persona_run
from engine.prices import Price, load_prices
from engine.rundir import RunDirBusy, lock_run_dir, queue_path
from engine.sqlite_queue import SQLiteQueue
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
    # the last run's learned request rate per model, calls answered and 429s among them
    rate_limits: list[LearnedRate] = msgspec.field(default_factory=list)


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
            cost_if_batch_usd=None if cost is None else round(cost / 2, 6),
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
    if report.elapsed_s is not None:
        lines.append(f"  elapsed {report.elapsed_s:.1f} s (first call to last finish)")
    lines += render_learned(report.rate_limits)
    return "\n".join(lines)


async def status_command(run_dir: Path, as_json: bool, prices_path: Path | None = None) -> int:
    path = queue_path(run_dir)
    if not path.exists():
        print(f"error: no run at {run_dir} (no {path.name})", file=sys.stderr)
        return 2
    queue = await SQLiteQueue.open(path)
    try:
        learned = learned_from_meta(await queue.get_meta(META_KEY))
        report = status_report(run_dir, await queue.counts(), load_prices(prices_path), learned)
    finally:
        await queue.close()
    print(msgspec.json.encode(report).decode() if as_json else render_status(report))
    return 0


async def export_command(run_dir: Path, prices_path: Path | None = None) -> int:
    path = queue_path(run_dir)
    if not path.exists():
        print(f"error: no run at {run_dir} (no {path.name})", file=sys.stderr)
        return 2
    try:
        lock = lock_run_dir(run_dir)
    except RunDirBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with lock:
        queue = await SQLiteQueue.open(path)
        output = OutputFiles(run_dir, prices=load_prices(prices_path))
        try:
            await output.rebuild(queue)
            counts = await queue.counts()
            pairs = None
            if await queue.run_sync(is_persona_run):
                prices = load_prices(prices_path)
                pairs = await queue.run_sync(lambda db: export_pairs(db, run_dir, prices))
        finally:
            output.close()
            await queue.close()
    print(f"exported {counts.count(Status.DONE)} results and {counts.count(Status.FAILED)} errors")
    if pairs is not None:
        print(f"exported {pairs} pairs -> {run_dir / 'pairs.jsonl'} (+ .dpo, .release)")
    return 0
