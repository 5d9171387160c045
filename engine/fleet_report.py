"""`status --queue URL` and `export --queue URL --run-dir DIR`: a run shared by many workers,
read from its database (the output of record), also while the workers are still running."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from engine import pipelines
from engine.abandoned import abandoned_calls
from engine.errors import SettingsError, UserError, exit_status_of
from engine.fleet import ALIVE_S
from engine.learned_rates import META_KEY, learned_from_meta
from engine.output import ERRORS, RESULTS, render_line
from engine.pipeline import PIPELINE_KEY, RESULTS_FORMAT, chosen_formats
from engine.prices import Price, load_prices
from engine.queue.backends import open_shared_queue
from engine.queue.postgres import PostgresQueue
from engine.report import StatusReport, render_status, status_report
from engine.rundir import lock_run_dir
from schemas.fleet import WorkerRow
from schemas.job import Status


class WorkerStatus(msgspec.Struct):
    host: str
    pid: int
    state: str  # running | silent (no heartbeat within ALIVE_S: dead or cut off) | stopped
    last_heartbeat_s_ago: float
    jobs_done: int
    rate_per_s: float  # jobs finished per second since it joined
    concurrency: int
    id: str


class FleetStatus(msgspec.Struct):
    run: StatusReport
    workers: list[WorkerStatus]


def worker_status(row: WorkerRow, now: float) -> WorkerStatus:
    end = row.stopped_at if row.stopped_at is not None else row.heartbeat_at
    elapsed = max(end - row.started_at, 1e-9)
    if row.stopped_at is not None:
        state = "stopped"
    elif now - row.heartbeat_at > ALIVE_S:
        state = "silent"
    else:
        state = "running"
    return WorkerStatus(
        host=row.host,
        pid=row.pid,
        state=state,
        last_heartbeat_s_ago=round(max(0.0, now - row.heartbeat_at), 1),
        jobs_done=row.jobs_done,
        rate_per_s=round(row.jobs_done / elapsed, 1) if row.jobs_done else 0.0,
        concurrency=row.concurrency,
        id=row.id,
    )


def render_fleet(status: FleetStatus) -> str:
    lines = [render_status(status.run), f"  workers {len(status.workers)}:"]
    for w in status.workers:
        lines.append(
            f"    {w.host} pid {w.pid}  {w.state}  last heartbeat {w.last_heartbeat_s_ago:.1f} s "
            f"ago  done {w.jobs_done}  {w.rate_per_s}/s  concurrency {w.concurrency}"
        )
    return "\n".join(lines)


async def fleet_status_command(url: str, as_json: bool, prices_path: Path | None) -> int:
    try:
        prices = load_prices(prices_path)
        queue = await open_shared_queue(url)
        try:
            learned = learned_from_meta(await queue.get_meta(META_KEY))
            report = status_report(Path(queue.url), await queue.counts(), prices, learned)
            report.run_dir = queue.url  # the redacted URL: never the password
            report.abandoned_calls = await abandoned_calls(queue)
            now = time.time()
            workers = [worker_status(row, now) for row in await queue.workers()]
        finally:
            await queue.close()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_status_of(exc)
    status = FleetStatus(report, workers)
    print(msgspec.json.encode(status).decode() if as_json else render_fleet(status))
    return 0


async def fleet_export_command(
    url: str, run_dir: Path, prices_path: Path | None, asked: Sequence[str] | None = None
) -> int:
    try:
        prices = load_prices(prices_path)
        os.makedirs(run_dir, exist_ok=True)
        with lock_run_dir(run_dir):
            queue = await open_shared_queue(url)
            try:
                name = await queue.get_meta(PIPELINE_KEY)
                if name is None:
                    raise SettingsError(f"no run in the database {queue.url}")
                pipeline = await pipelines.resume(name, queue)
                formats = chosen_formats(pipeline, asked)
                with_results = RESULTS_FORMAT in formats
                done, failed = await write_outputs(queue, run_dir, prices, with_results)
                said = await pipeline.export(queue, run_dir, prices, formats)
            finally:
                await queue.close()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_status_of(exc)
    if with_results:
        print(f"exported {done} results and {failed} errors -> {run_dir}")
    else:
        print(f"exported {failed} errors -> {run_dir}")
    if said:
        print(said)
    return 0


async def write_outputs(
    queue: PostgresQueue, run_dir: Path, prices: Mapping[str, Price], with_results: bool = True
) -> tuple[int, int]:
    """errors.jsonl (and results.jsonl) of every job finished so far, each once, in enqueue
    order: written beside, then renamed over (a reader never sees half a file)."""
    names = {Status.FAILED: ERRORS}
    if with_results:
        names[Status.DONE] = RESULTS
    tmp = {status: run_dir / f".{name}.tmp" for status, name in names.items()}
    counts = {Status.DONE: 0, Status.FAILED: 0}
    files = {status: path.open("wb") for status, path in tmp.items()}
    try:
        async for row in queue.iter_terminal():
            counts[row.status] = counts.get(row.status, 0) + 1
            if row.status in files:
                files[row.status].write(render_line(row, prices))
        for handle in files.values():
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        for handle in files.values():
            handle.close()
    for status, name in names.items():
        os.replace(tmp[status], run_dir / name)
    return counts[Status.DONE], counts[Status.FAILED]
