"""`python -m engine …`: the command-line contract. Flags are public: add freely, rename none.

Exit status: 0 all jobs done; 3 finished with some jobs failed permanently; 2 bad usage or bad
input; 4 stopped because every call of a stage and model was rejected the same way (a wrong key,
a mistyped model: those jobs are back in the queue, none failed); 5 stopped because the run
directory or the cache is full or not writable; 130 stopped by a signal. After 4, 5 and 130
the same command resumes.

`--queue postgresql://…` (generate, worker, status, export): the run lives in that database,
shared by worker processes on many hosts (engine.fleet) instead of RUN_DIR/queue.sqlite.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.argtypes import comma_list, positive_int
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
        "--export-format",
        type=comma_list,
        default=None,
        metavar="FMT[,FMT…]",
        help="what the finished run writes: results (results.jsonl), and a PERSONA run's "
        "parquet (pairs*.parquet), pairs, dpo, release (pairs*.jsonl), or all (default: "
        "parquet for a PERSONA run, results for --requests)",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="queue and outputs (default: runs/persona, or runs/requests with --requests)",
    )
    _add_queue_flag(p)
    p.add_argument(
        "--enqueue-only",
        action="store_true",
        help="with --queue: enqueue the run and exit (start the workers with `worker`)",
    )
    pipelines.generate_module().add_generate_arguments(p.add_argument_group("PERSONA pipeline"))
    add_engine_flags(p)
    p.set_defaults(func=_run_generate)


_QUEUE_HELP = (
    "a PostgreSQL database holding the run, shared by workers on many hosts "
    "(postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE; one database holds one run)"
)


def _add_queue_flag(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument(
        "--queue",
        required=required,
        metavar="URL",
        help=_QUEUE_HELP + ("" if required else " (default: RUN_DIR/queue.sqlite)"),
    )


def _add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from engine.config import add_engine_flags

    p = sub.add_parser(
        "worker",
        allow_abbrev=False,
        help="join the run in a PostgreSQL database as one more worker",
        description="Work on the run that `generate --queue URL` enqueued in that database, "
        "beside the other workers, until no job is left. Writes no files: `export --queue URL "
        "--run-dir DIR` does. --rpm/--tpm are the whole run's budget, divided between the "
        "live workers.",
    )
    _add_queue_flag(p, required=True)
    add_engine_flags(p)
    p.set_defaults(func=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    from engine.config import resolve_or_report
    from engine.fleet import run_worker
    from engine.generate import GenerateOptions

    config = resolve_or_report(args)
    if config is None:
        return EXIT_USAGE
    options = GenerateOptions.from_config(config, Path("."))
    return _run_async(lambda: run_worker(options, args.queue, None))


def _run_generate(args: argparse.Namespace) -> int:
    import msgspec

    from engine import pipelines
    from engine.config import resolve_or_report
    from engine.errors import UserError
    from engine.generate import GenerateOptions, generate
    from engine.pipeline import chosen_formats
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
    try:
        formats = chosen_formats(pipeline, args.export_format, "--export-format")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = msgspec.structs.replace(options, export_formats=formats)
    if args.queue is not None:
        from engine.fleet import run_worker

        only = args.enqueue_only
        return _run_async(lambda: run_worker(options, args.queue, pipeline, enqueue_only=only))
    if args.enqueue_only:
        print("error: --enqueue-only needs --queue postgresql://…", file=sys.stderr)
        return EXIT_USAGE
    return _run_async(lambda: generate(options, pipeline))


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status", allow_abbrev=False, help="counts by status and stage, attempts, tokens, elapsed"
    )
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    _add_queue_flag(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--prices", type=Path, help="price table overriding engine/data/prices.json")
    p.set_defaults(func=_run_status)


def _run_status(args: argparse.Namespace) -> int:
    from engine.report import status_command

    if args.queue is not None:
        from engine.fleet_report import fleet_status_command

        return _run_async(lambda: fleet_status_command(args.queue, args.json, args.prices))
    return _run_async(lambda: status_command(args.run_dir, args.json, args.prices))


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        allow_abbrev=False,
        help="rewrite errors.jsonl, and the run's outputs (results.jsonl, a PERSONA run's "
        "pairs) in the formats asked for, from the queue",
    )
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    _add_queue_flag(p)
    p.add_argument(
        "--format",
        type=comma_list,
        default=None,
        metavar="FMT[,FMT…]",
        help="results (results.jsonl), and a PERSONA run's parquet (pairs.parquet, "
        "pairs.dpo.parquet, pairs.release.parquet), pairs (pairs.jsonl), dpo "
        "(pairs.dpo.jsonl), release (pairs.release.jsonl), or all (default: what the run "
        "writes when it finishes: parquet for a PERSONA run, results for a request file)",
    )
    p.add_argument("--prices", type=Path, help="price table overriding engine/data/prices.json")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from engine.report import export_command

    if args.queue is not None:
        from engine.fleet_report import fleet_export_command

        return _run_async(
            lambda: fleet_export_command(args.queue, args.run_dir, args.prices, args.format)
        )
    return _run_async(lambda: export_command(args.run_dir, args.prices, args.format))


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from workers.sim.config import SimConfig

    d = SimConfig()  # every default of the simulator is written once, there
    p = sub.add_parser(
        "simulate", allow_abbrev=False, help="serve the OpenAI-compatible simulator on 127.0.0.1"
    )
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (default: 8000)")
    p.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    p.add_argument("--latency-ms", type=float, default=d.latency_ms, help="(default: %(default)s)")
    p.add_argument(
        "--latency-dist",
        choices=("fixed", "lognormal"),
        default=d.latency_dist,
        help="lognormal: median = --latency-ms (default: %(default)s)",
    )
    p.add_argument(
        "--latency-sigma", type=float, default=d.latency_sigma, help="(default: %(default)s)"
    )
    p.add_argument(
        "--output-tokens",
        type=int,
        default=d.output_tokens,
        help="mean completion length (default: %(default)s)",
    )
    p.add_argument("--rpm", type=int, default=d.rpm, help="requests per minute enforced")
    p.add_argument("--tpm", type=int, default=d.tpm, help="tokens per minute enforced")
    p.add_argument(
        "--rpm-limit-mode",
        choices=("headers", "retry-after", "bare"),
        default=d.rpm_limit_mode,
        help="how a request over --rpm/--tpm is refused: 429 with Retry-After and "
        "x-ratelimit-* (headers), with Retry-After only, or with no header at all (bare) "
        "(default: %(default)s)",
    )
    for flag, text in (
        ("--error-rate", "share answered 500 or 503"),
        ("--rate-limit-rate", "share answered 429 even under the limits"),
        ("--timeout-rate", "share that hang for --hang-s"),
        ("--hang-s", "how long a hung request hangs"),
        ("--malformed-rate", "share answered 200 with a body that is not a completion"),
        ("--content-filter-rate", "share answered 200 with finish_reason content_filter"),
        ("--outage-for-s", "how long the outage lasts"),
    ):
        default = getattr(d, flag.removeprefix("--").replace("-", "_"))
        p.add_argument(flag, type=float, default=default, help=f"{text} (default: {default})")
    p.add_argument(
        "--outage-after-s", type=float, default=d.outage_after_s, help="the outage begins then"
    )
    p.add_argument(
        "--outage-after-requests",
        type=positive_int,
        default=d.outage_after_requests,
        help="the outage begins when this many requests have arrived (instead of a time)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        dest="models",
        help="serve only these models (repeat); others get 404",
    )
    p.add_argument(
        "--api-key",
        default=d.api_key,
        help="answer 401 invalid_api_key to requests not bearing this key (default: any key)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    p.add_argument(
        "--pass-rate",
        type=float,
        default=d.pass_rate,
        help="JSON verdicts (response_format): share with needs_revision false "
        "(default: %(default)s)",
    )
    _add_simulate_batch(p, d)
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=_run_simulate)


def _add_simulate_batch(p: argparse.ArgumentParser, d: Any) -> None:
    """The simulated Batch API's speed (in polls, not seconds) and faults."""
    g = p.add_argument_group("Batch API (/v1/files, /v1/batches)")
    for flag, kind, text in (
        ("--batch-polls", int, "retrieves a batch stays in_progress"),
        ("--batch-finalizing-polls", int, "then retrieves it stays finalizing (slow finalizing)"),
        ("--batch-line-error-rate", float, "share of lines answered 500 in the error file"),
        ("--batch-line-permanent-rate", float, "share of lines answered 400 in the error file"),
        ("--batch-expire-share", float, "share of its lines an expiring batch ran"),
    ):
        default = getattr(d, flag.removeprefix("--").replace("-", "_"))
        g.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default})")
    for flag, text in (
        ("--batch-fail-validation", "the N-th batch created fails validation (repeat)"),
        ("--batch-expire", "the N-th batch created expires with part of its output (repeat)"),
    ):
        g.add_argument(flag, type=positive_int, action="append", default=[], metavar="N", help=text)
    g.add_argument(
        "--no-batch-api",
        dest="batch_api",
        action="store_false",
        help="answer 404 on /v1/batches, as a provider without the Batch API",
    )


def _run_simulate(args: argparse.Namespace) -> int:
    from engine.simproc import watch_parent
    from workers.sim.app import run_forever
    from workers.sim.config import SimConfig, config_problems

    values = {name: getattr(args, name) for name in SimConfig.__struct_fields__}
    tuples = {
        name: tuple(getattr(args, name)) for name in ("batch_fail_validation", "batch_expire")
    }
    config = SimConfig(**{**values, "models": tuple(args.models), **tuples})
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
    "worker": _add_worker,
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
    "engine.study.cli",
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
    from engine import command_line
    from engine.heap import fix_mmap_threshold

    fix_mmap_threshold()

    command_line.record(argv)
    args = build_parser(_command_of(argv)).parse_args(argv)
    configure_logging(args.log_level)
    code: int = args.func(args)
    return code
