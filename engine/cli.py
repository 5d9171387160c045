"""`python -m engine …`: the command-line contract. Flags are public: add freely, rename none.

Exit status: 0 all jobs done; 3 finished with some jobs failed permanently; 2 bad usage or bad
input; 130 stopped by a signal (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.argtypes import positive_int
from engine.exits import EXIT_USAGE
from engine.logs import configure_logging

if TYPE_CHECKING:
    from engine.pipeline import Pipeline

# Each command imports what it needs when it runs, and `main` builds only the parser of the
# command it is given: `simulate` and `generate` start without numpy, the persona builder or
# the LLM stages (about half the start-up time of a simulator).

DEFAULT_RUN_DIR = Path("runs/persona")


def _add_generate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate",
        allow_abbrev=False,
        help="generate the PERSONA preference pairs (default), or run a request file",
        description="Without --requests: the PERSONA pipeline (answer -> critique -> revise) on "
        "the shipped personas and prompts, exported to RUN_DIR/pairs*.jsonl. With --requests: "
        "every request of an OpenAI Batch API input file, to RUN_DIR/results.jsonl.",
    )

    from engine import pipelines
    from engine.config import add_engine_flags

    p.add_argument("--requests", type=Path, help="OpenAI Batch API input JSONL")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="queue and outputs (default: runs/persona, or runs/requests with --requests)",
    )
    pipelines.generate_module().add_generate_arguments(p.add_argument_group("PERSONA pipeline"))
    add_engine_flags(p)
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from engine import pipelines
    from engine.config import resolve_or_report
    from engine.generate import GenerateOptions, generate
    from engine.requests import RequestsPipeline

    config = resolve_or_report(args)
    if config is None:
        return EXIT_USAGE
    pipeline: Pipeline
    if args.requests is not None:
        pipeline = RequestsPipeline(args.requests)
    else:
        pipeline = pipelines.generate_module().from_args(args)
    default_dir = Path("runs/requests" if args.requests else "runs/persona")
    options = GenerateOptions.from_config(config, args.run_dir or default_dir)
    return _run_async(lambda: generate(options, pipeline))


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status", allow_abbrev=False, help="counts by status and stage, attempts, tokens, elapsed"
    )
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--prices", type=Path, help="price table overriding engine/data/prices.json")
    p.set_defaults(func=_run_status)


def _run_status(args: argparse.Namespace) -> int:
    from engine.report import status_command

    return _run_async(lambda: status_command(args.run_dir, args.json, args.prices))


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        allow_abbrev=False,
        help="rewrite results.jsonl and errors.jsonl (and a PERSONA run's pairs) from the queue",
    )
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--prices", type=Path, help="price table overriding engine/data/prices.json")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from engine.report import export_command

    return _run_async(lambda: export_command(args.run_dir, args.prices))


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate", allow_abbrev=False, help="serve the OpenAI-compatible simulator on 127.0.0.1"
    )
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--latency-dist", choices=("fixed", "lognormal"), default="fixed")
    p.add_argument("--latency-sigma", type=float, default=0.8)
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--rpm", type=int)
    p.add_argument("--tpm", type=int)
    p.add_argument(
        "--rpm-limit-mode",
        choices=("headers", "retry-after", "bare"),
        default="headers",
        help="how a request over --rpm/--tpm is refused: 429 with Retry-After and "
        "x-ratelimit-* (headers), with Retry-After only, or with no header at all (bare)",
    )
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--rate-limit-rate", type=float, default=0.0)
    p.add_argument("--timeout-rate", type=float, default=0.0)
    p.add_argument("--hang-s", type=float, default=300.0)
    p.add_argument("--malformed-rate", type=float, default=0.0)
    p.add_argument("--outage-after-s", type=float)
    p.add_argument(
        "--outage-after-requests",
        type=positive_int,
        help="the outage begins when this many requests have arrived (instead of a time)",
    )
    p.add_argument("--outage-for-s", type=float, default=0.0)
    p.add_argument(
        "--model",
        action="append",
        default=[],
        dest="models",
        help="serve only these models (repeat); others get 404",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pass-rate",
        type=float,
        default=0.5,
        help="JSON verdicts (response_format): share with needs_revision false",
    )
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from engine.simproc import watch_parent
    from workers.sim.app import run_forever
    from workers.sim.config import SimConfig, config_problems

    config = SimConfig(
        latency_ms=args.latency_ms,
        latency_dist=args.latency_dist,
        latency_sigma=args.latency_sigma,
        output_tokens=args.output_tokens,
        rpm=args.rpm,
        tpm=args.tpm,
        rpm_limit_mode=args.rpm_limit_mode,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        timeout_rate=args.timeout_rate,
        hang_s=args.hang_s,
        malformed_rate=args.malformed_rate,
        outage_after_s=args.outage_after_s,
        outage_after_requests=args.outage_after_requests,
        outage_for_s=args.outage_for_s,
        models=tuple(args.models),
        seed=args.seed,
        pass_rate=args.pass_rate,
    )
    problems = config_problems(config)
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return EXIT_USAGE
    if args.parent_pid is not None:
        watch_parent(args.parent_pid)
    run_forever(config, args.host, args.port)
    return 0


def _run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    from workers import loops

    return loops.run(main)


_Adder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
_CORE: dict[str, _Adder] = {
    "generate": _add_generate,
    "status": _add_status,
    "export": _add_export,
    "simulate": _add_simulate,
}
#: modules whose `add_parsers` adds the other commands (imported only to build those)
_MORE = (
    "engine.persona.census.cli",
    "engine.persona.stages.classify",
    "engine.persona.stages.enrich",
    "engine.evaluation.cli",
    "engine.evaluation.agree",
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` one of the core commands, only that one."""
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        allow_abbrev=False,
        description="Async high-throughput generation engine with a durable SQLite queue.",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    sub = parser.add_subparsers(dest="command", required=True)
    if command in _CORE:
        _CORE[command](sub)
        return parser
    for add in _CORE.values():
        add(sub)
    for module in _MORE:
        add_more: _Adder = importlib.import_module(module).add_parsers
        add_more(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word in `argv` (after the top-level options), if there is one."""
    args = iter(argv)
    for arg in args:
        if arg == "--log-level":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_of(argv)).parse_args(argv)
    configure_logging(args.log_level)
    code: int = args.func(args)
    return code
