"""`python -m bench.batch`: the `batch` scenario. The same PERSONA run (or request file) once
online and once through the Batch API, each against a fresh simulator started with the same
flags and seed; reports waves, batches, wall time and cost side by side, and whether the two
runs produced the same pairs.

The simulated batches finish after `--batch-polls` polls (not after minutes or hours, as a
provider's do): the batch wall time measured here is the engine's own overhead of the mode
(upload, polling, download, commit) plus the poll waits, not a provider's turnaround.

    python -m bench.batch --personas 100 --prompts-per-persona 20 --latency-ms 50
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

PREFIX = "simulator listening on "


class Side(msgspec.Struct):
    mode: str
    wall_s: float
    calls: int
    cost_usd: float | None
    online_equivalent_usd: float | None
    waves: int | None = None
    batches: int | None = None
    sim_online_requests: int = 0
    sim_batch_lines: int = 0


class BatchBench(msgspec.Struct):
    command: str
    workload: str
    online: Side
    batch: Side
    same_pairs: bool
    cost_ratio: float | None  # batch / online
    wall_ratio: float  # batch / online


@contextmanager
def _simulator(args: Sequence[str]) -> Iterator[str]:
    cmd = [sys.executable, "-m", "engine", "simulate", "--port", "0", *args]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith(PREFIX):
            raise RuntimeError(f"the simulator said {line!r}")
        yield line.removeprefix(PREFIX)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _stats(base_url: str) -> dict[str, Any]:
    import urllib.request  # noqa: PLC0415 (only here)

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=10) as resp:
        data: dict[str, Any] = json.load(resp)
    return data


def _engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, check=False
    )


def _side(
    mode: str, workload: list[str], sim_args: list[str], run_dir: Path, extra: list[str]
) -> Side:
    with _simulator(sim_args) as url:
        started = time.perf_counter()
        out = _engine("generate", *workload, "--run-dir", str(run_dir), "--base-url", url, *extra)
        wall = time.perf_counter() - started
        if out.returncode != 0:
            raise RuntimeError(f"{mode} run failed ({out.returncode}): {out.stderr[-2000:]}")
        stats = _stats(url)
    status = json.loads(_engine("status", "--run-dir", str(run_dir), "--json").stdout)
    batch = status.get("batch")
    online_cost = sum(m["cost_usd"] or 0.0 for m in status["by_model"].values())
    return Side(
        mode=mode,
        wall_s=round(wall, 2),
        calls=status["by_status"]["done"],
        cost_usd=status["cost_usd"],
        online_equivalent_usd=round(online_cost, 6),
        waves=batch["waves"] if batch else None,
        batches=batch["batches"] if batch else None,
        sim_online_requests=stats["requests_received"],
        sim_batch_lines=stats["batch_lines_received"],
    )


def _pairs(run_dir: Path) -> list[tuple[str, ...]]:
    keys = ("persona_id", "prompt_id", "rejected", "critique", "chosen")
    with (run_dir / "pairs.jsonl").open() as handle:
        return sorted(tuple(json.loads(line)[k] for k in keys) for line in handle)


def render(report: BatchBench) -> str:
    def money(value: float | None) -> str:
        return "-" if value is None else f"${value:.4f}"

    rows = [
        "| mode | wall s | calls | waves | batches | cost | online-equivalent |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in (report.online, report.batch):
        rows.append(
            f"| {s.mode} | {s.wall_s:.2f} | {s.calls} | {s.waves or '-'} | {s.batches or '-'} "
            f"| {money(s.cost_usd)} | {money(s.online_equivalent_usd)} |"
        )
    cost = "-" if report.cost_ratio is None else f"{report.cost_ratio:.2f}"
    rows.append("")
    rows.append(
        f"batch/online: cost x{cost}, wall time x{report.wall_ratio:.2f}; same pairs: "
        f"{report.same_pairs}; calls through batches: {report.batch.sim_batch_lines} lines, "
        f"{report.batch.sim_online_requests} online requests"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__.split("\n")[0])
    p.add_argument("--personas", type=int, default=20, help="(default: %(default)s)")
    p.add_argument("--prompts-per-persona", type=int, default=10, help="(default: %(default)s)")
    p.add_argument("--latency-ms", type=float, default=50.0, help="online latency (default: 50)")
    p.add_argument("--concurrency", type=int, default=64, help="online calls (default: 64)")
    p.add_argument("--batch-polls", type=int, default=3, help="polls a batch runs (default: 3)")
    p.add_argument("--batch-poll-s", type=float, default=0.2, help="(default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/batch"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    workload = [
        "--personas", str(args.personas), "--prompts-per-persona", str(args.prompts_per_persona),
        "--no-cache", "--no-progress",
    ]  # fmt: skip
    sim = ["--latency-ms", str(args.latency_ms), "--batch-polls", str(args.batch_polls)]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    online_dir, batch_dir = args.out / f"online-{stamp}", args.out / f"batch-{stamp}"
    online = _side("online", workload, sim, online_dir, ["--concurrency", str(args.concurrency)])
    batch = _side(
        "batch", workload, sim, batch_dir,
        ["--api", "batch", "--batch-poll-s", str(args.batch_poll_s),
         "--batch-poll-max-s", str(args.batch_poll_s)],
    )  # fmt: skip
    report = BatchBench(
        command="python -m bench.batch " + " ".join(argv),
        workload=f"PERSONA {args.personas} personas x {args.prompts_per_persona} prompts",
        online=online,
        batch=batch,
        same_pairs=_pairs(online_dir) == _pairs(batch_dir),
        cost_ratio=(
            round(batch.cost_usd / online.cost_usd, 3)
            if batch.cost_usd is not None and online.cost_usd
            else None
        ),
        wall_ratio=round(batch.wall_s / online.wall_s, 2),
    )
    (args.out / f"report-{stamp}.json").write_bytes(
        msgspec.json.format(msgspec.json.encode(report))
    )
    print(report.command)
    print(report.workload)
    print(render(report))
    return 0 if report.same_pairs else 1


if __name__ == "__main__":
    sys.exit(main())
