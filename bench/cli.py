"""`python -m bench …`: run a scenario, list scenarios, estimate a real run's cost, weigh the
learned rate on a simulated clock.

Exit status: 0 measured and every check met (or none defined); 1 a check not met, or a process
failed; 2 bad usage; 4 the scenario is not available (the engine lacks what it needs).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from bench import cli_args
from bench.bare import bare_main
from bench.estimate import EstimateError, estimate, render_estimate
from bench.latency_file import latency_file, read_latency, write_latency
from bench.prices import PriceTableError, UnknownModel, load_prices, price_for
from bench.procs import BenchProcessError, EngineRejected
from bench.report import (
    BenchReport,
    HostInfo,
    RunMetrics,
    evaluate,
    render_markdown,
    report_decoder,
    write_json,
    write_markdown,
)
from bench.runner import RunOptions, Samples, ScenarioPending, run_scenario
from bench.scenarios import SCENARIOS, Scenario, apply_overrides
from engine.logs import configure_logging

EXIT_OK = 0
EXIT_NOT_MET = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 4


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _host() -> HostInfo:
    return HostInfo(
        cpus=os.cpu_count() or 0,
        load_avg_1m_before=round(os.getloadavg()[0], 2),
        python=platform.python_version(),
        platform=platform.platform(),
    )


def _measure(
    scenario: Scenario, options: RunOptions
) -> tuple[list[RunMetrics], Samples, str | None]:
    """(runs, samples, why unavailable) — pending engine support is a result, not a crash."""
    try:
        runs, samples = run_scenario(scenario, options)
    except ScenarioPending as exc:
        return [], {}, str(exc)
    except EngineRejected as exc:
        what = "not available yet: " if scenario.requests.source == "persona" else ""
        return [], {}, f"{scenario.name}: {what}{exc}"
    return runs, samples, None


def _run_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    scenario = apply_overrides(SCENARIOS[args.scenario], cli_args.overrides(args))
    price = price_for(load_prices(args.prices), scenario.requests.model)
    started = _now()
    out_dir: Path = args.out or Path("runs/bench") / f"{scenario.name}-{started:%Y%m%d-%H%M%S}"
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=False)
    host = _host()
    options = RunOptions(out_dir, price, args.keep, args.process_timeout_s)
    runs, samples, unavailable = _measure(scenario, options)
    report = BenchReport(
        scenario=scenario,
        command=shlex.join(["python", "-m", "bench", *argv]),
        started_at=f"{started:%Y-%m-%d %H:%M:%S}",
        finished_at=f"{_now():%Y-%m-%d %H:%M:%S}",
        host=host,
        price_model=scenario.requests.model,
        price=price,
        runs=runs,
        checks=evaluate(scenario.targets, runs),
        unavailable=unavailable,
    )
    write_json(report, out_dir / "report.json")
    write_markdown(report, out_dir / "report.md")
    if runs:
        latency = latency_file(samples)
        write_latency(latency, out_dir / "latency.json")
        from bench.plot import write_png  # matplotlib: imported only to draw

        write_png(report, latency, out_dir / "report.png")
    print(render_markdown(report))
    print(f"report: {out_dir}/report.{{json,md{',png' if runs else ''}}}")
    if unavailable:
        print(unavailable, file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_NOT_MET if any(c.status == "not met" for c in report.checks) else EXIT_OK


def _plot_command(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    """report.png drawn again from a run directory's report.json (and latency.json when it has
    one: runs before it was written get no CDF)."""
    run_dir: Path = args.run_dir
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise cli_args.UsageError("RUN_DIR", f"{report_path}: no such file")
    try:
        report = report_decoder.decode(report_path.read_bytes())
    except msgspec.DecodeError as exc:
        raise cli_args.UsageError("RUN_DIR", f"{report_path}: not a bench report: {exc}") from None
    if not report.runs:
        raise cli_args.UsageError("RUN_DIR", f"{report_path}: no runs to draw")
    latency_path = run_dir / "latency.json"
    try:
        latency = read_latency(latency_path) if latency_path.is_file() else None
    except ValueError as exc:
        raise cli_args.UsageError("RUN_DIR", str(exc)) from None
    out: Path = args.out or run_dir / "report.png"
    from bench.plot import write_png  # matplotlib: imported only to draw

    write_png(report, latency, out)
    print(out)
    return EXIT_OK


def _list_command(_args: argparse.Namespace, _argv: Sequence[str]) -> int:
    for name, s in SCENARIOS.items():
        conc = ",".join(map(str, s.concurrency))
        jobs = str(s.jobs) if s.jobs else "all"
        print(f"{name:<14} jobs {jobs:<8} concurrency {conc:<8} {', '.join(s.variants)}")
        print(f"{'':<14} {s.description}")
    return EXIT_OK


def _estimate_command(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    inp = cli_args.estimate_input(args)
    result = estimate(inp, price_for(load_prices(args.prices), inp.model))
    if args.json:
        print(cli_args.to_json(result))
    else:
        print(render_estimate(result))
    return EXIT_OK


def _bare_command(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    return bare_main(args.requests, args.base_url, args.concurrency, args.out)


def _learner_command(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    from bench.learner import config_with, render, run_grid

    if not 0 <= args.warmup_s < args.seconds:
        raise cli_args.UsageError(
            "--warmup-s", f"must be at least 0 and below --seconds ({args.seconds:g})"
        )
    if args.log_level == "info":
        configure_logging("warning")  # a simulated learner's every cut is not news
    if not 0 <= args.random_429 < 1:
        raise cli_args.UsageError(
            "--random-429", f"must be at least 0 and below 1, got {args.random_429:g}"
        )
    try:
        config = config_with(args.set)
    except ValueError as exc:
        raise cli_args.UsageError("--set", str(exc)) from None
    grid = run_grid(
        config,
        seconds=args.seconds,
        warmup_s=args.warmup_s,
        concurrency=args.concurrency,
        random_429=args.random_429,
    )
    print(cli_args.to_json(grid) if args.json else render(grid))
    return EXIT_OK


_COMMANDS = {
    "run": _run_command,
    "list": _list_command,
    "estimate": _estimate_command,
    "bare": _bare_command,
    "plot": _plot_command,
    "learner": _learner_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = cli_args.build_parser(sorted(SCENARIOS))
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return _COMMANDS[args.command](args, argv)
    except (UnknownModel, PriceTableError, EstimateError, cli_args.UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BenchProcessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_MET
