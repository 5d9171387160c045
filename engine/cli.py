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
from engine.persona.paths import DEFAULT_PERSONAS_PATH, DEFAULT_PROMPTS_PATH
from engine.rundir import default_cache_path

if TYPE_CHECKING:
    from ratelimits.limiter import LimitsConfig

# Each command imports what it needs when it runs, and `main` builds only the parser of the
# command it is given: `simulate` and `generate` start without numpy, the persona builder or
# the LLM stages (about half the start-up time of a simulator).

DEFAULT_RUN_DIR = Path("runs/persona")


def _add_generate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate",
        help="generate the PERSONA preference pairs (default), or run a request file",
        description="Without --requests: the PERSONA pipeline (answer -> critique -> revise) on "
        "the shipped personas and prompts, exported to RUN_DIR/pairs*.jsonl. With --requests: "
        "every request of an OpenAI Batch API input file, to RUN_DIR/results.jsonl.",
    )
    p.add_argument("--requests", type=Path, help="OpenAI Batch API input JSONL")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="queue and outputs (default: runs/persona, or runs/requests with --requests)",
    )
    p.add_argument(
        "--personas",
        type=positive_int,
        default=None,
        help="use the first N personas (default: all)",
    )
    p.add_argument(
        "--prompts-per-persona",
        type=positive_int,
        default=200,
        help="pairs per persona, split 50/25/25 train/test_seen/test_unseen",
    )
    p.add_argument("--personas-file", type=Path, default=DEFAULT_PERSONAS_PATH)
    p.add_argument("--prompts-file", type=Path, default=DEFAULT_PROMPTS_PATH)
    p.add_argument("--model", default="sim-small", help="model of every stage")
    p.add_argument("--answer-model", help="model of the answer stage (default: --model)")
    p.add_argument("--critique-model", help="model of the critique stage (default: --model)")
    p.add_argument("--revise-model", help="model of the revise stage (default: --model)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument(
        "--max-tokens", type=positive_int, default=512, help="completion cap of each stage's calls"
    )
    p.add_argument("--prices", type=Path, help="price table overriding engine/data/prices.json")
    p.add_argument("--concurrency", type=positive_int, default=64, help="calls in flight")
    p.add_argument(
        "--base-url",
        help="OpenAI-compatible API (default: $OPENAI_BASE_URL, else the built-in simulator)",
    )
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (never logged or stored)",
    )
    p.add_argument(
        "--max-attempts", type=positive_int, default=5, help="attempts per job before it fails"
    )
    p.add_argument(
        "--retry-base-s",
        type=float,
        default=0.25,
        help="first retry delay; doubles each attempt (with jitter). Short on purpose: "
        "outages are the circuit breaker's job and 429s carry Retry-After",
    )
    p.add_argument("--retry-max-s", type=float, default=60.0, help="longest retry delay")
    p.add_argument("--timeout-s", type=float, default=120.0, help="per-request timeout")
    p.add_argument(
        "--grace-s",
        type=float,
        default=30.0,
        help="on SIGINT/SIGTERM, how long in-flight calls may finish",
    )
    p.add_argument("--transport", choices=("aiohttp", "sdk"), default="aiohttp")
    p.add_argument("--rpm", type=float, help="requests per minute budget (default: unlimited)")
    p.add_argument("--tpm", type=float, help="tokens per minute budget (default: unlimited)")
    p.add_argument(
        "--model-rpm",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="per-model requests per minute (repeat for several models)",
    )
    p.add_argument(
        "--model-tpm",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="per-model tokens per minute (repeat for several models)",
    )
    # issue 15: rate limits found, not configured
    p.add_argument(
        "--rate-limit-give-up-s",
        type=float,
        default=3600.0,
        help="429s never spend --max-attempts; a job the server keeps refusing fails this many "
        "seconds after its first 429",
    )
    p.add_argument(
        "--learn-rate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learn the request rate the server allows from its 429s (below --rpm if given), "
        "starting from the rate remembered in rates.json beside the cache",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="response cache shared across runs (default: "
        "$PERSONA_TESTBED_CACHE or ~/.cache/persona-testbed/cache.sqlite)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="no deduplication: every request is paid, nothing is cached",
    )
    p.add_argument(
        "--sim-latency-ms",
        type=float,
        default=0.0,
        help="latency of the built-in simulator when it is used",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress display (default: on a terminal)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from engine.generate import GenerateOptions, generate
    from engine.persona.graph import GraphConfig
    from engine.persona.run import PersonaRunOptions
    from engine.run import RunConfig
    from workers.executor import RetryPolicy

    run = RunConfig(
        concurrency=args.concurrency,
        timeout_s=args.timeout_s,
        grace_s=args.grace_s,
        retry=RetryPolicy(
            max_attempts=args.max_attempts, base_s=args.retry_base_s, max_s=args.retry_max_s
        ),
        seed=args.seed,
    )
    graph = GraphConfig(
        answer_model=args.answer_model or args.model,
        critique_model=args.critique_model or args.model,
        revise_model=args.revise_model or args.model,
        temperature=args.temperature,
        answer_max_tokens=args.max_tokens,
        critique_max_tokens=args.max_tokens,
        revise_max_tokens=args.max_tokens,
    )
    persona = PersonaRunOptions(
        personas_path=args.personas_file,
        prompts_path=args.prompts_file,
        n_personas=args.personas,
        prompts_per_persona=args.prompts_per_persona,
        seed=args.seed,
        graph=graph,
    )
    default_dir = Path("runs/requests" if args.requests else "runs/persona")
    cache_path = None if args.no_cache else (args.cache or default_cache_path())
    options = GenerateOptions(
        run_dir=args.run_dir or default_dir,
        requests=args.requests,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        transport=args.transport,
        simulator_args=("--latency-ms", str(args.sim_latency_ms)),
        progress=args.progress,
        run=run,
        cache_path=cache_path,
        limits=_limits(args),
        persona=persona,
        prices_path=args.prices,
        **_rate_learning(args, cache_path),
    )
    return _run_async(lambda: generate(options))


def _rate_learning(args: argparse.Namespace, cache_path: Path | None) -> dict[str, Any]:
    """GenerateOptions' rate_limit, learn and rates_path (rates.json beside the cache)."""
    from engine.learned_rates import rates_path
    from ratelimits.learned import LearnConfig
    from workers.ratelimited import RateLimitPolicy

    if args.rate_limit_give_up_s <= 0:
        raise SystemExit("error: --rate-limit-give-up-s must be > 0")
    learn = LearnConfig() if args.learn_rate else None
    return {
        "rate_limit": RateLimitPolicy(give_up_s=args.rate_limit_give_up_s),
        "learn": learn,
        "rates_path": rates_path(cache_path or default_cache_path()) if learn else None,
    }


def _model_values(items: list[str], flag: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for item in items:
        model, sep, number = item.rpartition("=")
        try:
            values[model] = float(number)
        except ValueError:
            sep = ""
        if not sep or not model:
            raise SystemExit(f"error: {flag} takes MODEL=N, got {item!r}")
    return values


def _limits(args: argparse.Namespace) -> LimitsConfig | None:
    from ratelimits.limiter import LimitConfig, LimitsConfig, ModelLimits

    rpm = _model_values(args.model_rpm, "--model-rpm")
    tpm = _model_values(args.model_tpm, "--model-tpm")
    if args.rpm is None and args.tpm is None and not rpm and not tpm:
        return None
    models = {
        name: ModelLimits(
            **{k: v for k, v in (("rpm", rpm.get(name)), ("tpm", tpm.get(name))) if v}
        )
        for name in {*rpm, *tpm}
    }
    return LimitsConfig(default=LimitConfig(rpm=args.rpm, tpm=args.tpm), models=models)


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="counts by status and stage, attempts, tokens, elapsed")
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
        help="rewrite results.jsonl and errors.jsonl (and a PERSONA run's pairs) from the queue",
    )
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--prices", type=Path, help="price table overriding engine/data/prices.json")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from engine.report import export_command

    return _run_async(lambda: export_command(args.run_dir, args.prices))


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="serve the OpenAI-compatible simulator on 127.0.0.1")
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
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` one of the core commands, only that one."""
    parser = argparse.ArgumentParser(
        prog="python -m engine",
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
