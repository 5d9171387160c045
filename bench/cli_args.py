"""The bench's command line: the parser of every subcommand, and the conversions from parsed
flags to the Structs the rest of the bench works with (Overrides, EstimateInput)."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from bench.estimate import DEFAULT_STAGE_TOKENS, EstimateInput, StageTokens
from bench.scenarios import ALL_VARIANTS, EngineSettings, Overrides, RequestSettings, SimSettings
from engine.argtypes import positive_float, positive_int
from engine.config import FLAGS

_SPECIAL = frozenset({"extra_args", "rpm", "tpm"})  # set from --*-arg, --rpm/--tpm/--engine-*
_SIM_FIELDS = tuple(f for f in SimSettings.__struct_fields__ if f not in _SPECIAL)
_ENGINE_FIELDS = tuple(f for f in EngineSettings.__struct_fields__ if f not in _SPECIAL)
_REQUEST_FIELDS = ("model", "max_tokens")


class UsageError(ValueError):
    """A flag value the parser's types cannot catch (`flag`, `detail`)."""

    def __init__(self, flag: str, detail: str) -> None:
        super().__init__(f"{flag}: {detail}")
        self.flag = flag
        self.detail = detail


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N,N,…, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be at least 1, got {text!r}")
    return values


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    unknown = [n for n in names if n not in ALL_VARIANTS]
    if unknown:
        known = list(ALL_VARIANTS)
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; known: {known}")
    return names


def _add_sim_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulator (override the scenario's values)")
    g.add_argument("--latency-ms", type=float)
    g.add_argument("--latency-dist", choices=("fixed", "lognormal"))
    g.add_argument("--latency-sigma", type=float)
    g.add_argument("--output-tokens", type=int, help="mean completion length")
    g.add_argument("--rpm", type=int, help="RPM the simulator enforces (and the engine's budget)")
    g.add_argument("--tpm", type=int, help="TPM the simulator enforces (and the engine's budget)")
    g.add_argument(
        "--rpm-limit-mode",
        choices=("headers", "retry-after", "bare"),
        help="how the simulator refuses a request over its limits (429 with or without headers)",
    )
    g.add_argument("--error-rate", type=float)
    g.add_argument("--rate-limit-rate", type=float, help="injected 429s")
    g.add_argument("--timeout-rate", type=float, help="requests that hang for --hang-s")
    g.add_argument("--hang-s", type=float)
    g.add_argument("--malformed-rate", type=float)
    g.add_argument("--outage-after-s", type=float)
    g.add_argument("--outage-for-s", type=float)
    g.add_argument(
        "--sim-arg", action="append", default=[], help="extra simulator flag (--sim-arg=--x)"
    )


_ENGINE_OVERRIDES = ("--max-attempts", "--retry-base-s", "--retry-max-s", "--timeout-s")


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine (override the scenario's values)")
    g.add_argument("--engine-rpm", type=int, help="the engine's RPM budget (default: --rpm)")
    g.add_argument("--engine-tpm", type=int, help="the engine's TPM budget (default: --tpm)")
    # the engine's own flags, as `generate` defines them (engine.config), with no default here
    for flag in FLAGS:
        if flag.name in _ENGINE_OVERRIDES:
            g.add_argument(flag.name, type=flag.parse or str, help=flag.help, metavar=flag.metavar)
    g.add_argument(
        "--engine-arg", action="append", default=[], help="extra generate flag (--engine-arg=--x)"
    )


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser], names: list[str]) -> None:
    p = sub.add_parser(
        "run", allow_abbrev=False, help="run a scenario; write report.{json,md,png}, latency.json"
    )
    p.add_argument("scenario", choices=names, help="see `python -m bench list`")
    p.add_argument("--jobs", type=positive_int, help="requests in the synthetic request file")
    p.add_argument("--concurrency", type=_positive_ints, help="N, or a sweep: 16,64,256")
    p.add_argument(
        "--variants", type=_variants, help=f"comma-separated, of {','.join(ALL_VARIANTS)}"
    )
    p.add_argument("--seed", type=int, help="the simulator's and the engine's seed")
    p.add_argument(
        "--repeat", type=positive_int, help="rounds of every variant (checks use the median)"
    )
    p.add_argument("--out", type=Path, help="default: runs/bench/<scenario>-<timestamp>/")
    p.add_argument("--prices", type=Path, help="price file laid over engine/data/prices.json")
    p.add_argument("--model", help="model named in the requests (and priced)")
    p.add_argument("--max-tokens", type=int, help="max_tokens of each request")
    p.add_argument("--keep", action="store_true", help="keep queues, results and requests")
    p.add_argument("--process-timeout-s", type=float, default=1800.0, help="per process")
    _add_sim_flags(p)
    _add_engine_flags(p)


def _add_estimate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "estimate", allow_abbrev=False, help="calls, tokens, cost and wall time of a real run"
    )
    p.add_argument("--model", required=True, help="a model of the price table")
    p.add_argument("--personas", type=int, default=1586)
    p.add_argument("--prompts-per-persona", type=int, default=200)
    p.add_argument("--heldout-per-persona", type=int, default=50, help="of the prompts above")
    p.add_argument("--train-prompts", type=int, default=3000, help="train prompt pool")
    p.add_argument("--heldout-prompts", type=int, default=868, help="held-out prompt pool")
    p.add_argument(
        "--stage-tokens",
        action="append",
        default=[],
        metavar="STAGE=PROMPT:COMPLETION",
        help="tokens per call (assumed: answer=60:350 critique=700:250 revise=1000:250)",
    )
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency-ms", type=float, default=4000.0, help="mean latency per call")
    p.add_argument("--rpm", type=float, help="requests per minute limit")
    p.add_argument("--tpm", type=float, help="tokens per minute limit")
    p.add_argument("--prices", type=Path, help="price file laid over engine/data/prices.json")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_bare(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bare", allow_abbrev=False, help="the bare aiohttp baseline client (run by `bench run`)"
    )
    p.add_argument("--requests", type=Path, required=True, help="Batch API input JSONL")
    p.add_argument("--base-url", required=True)
    p.add_argument("--concurrency", type=positive_int, required=True)
    p.add_argument("--out", type=Path, required=True, help="where to write the JSON result")


def _add_plot(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plot", allow_abbrev=False, help="draw report.png again from a run directory"
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="holds report.json")
    p.add_argument("--out", type=Path, help="default: RUN_DIR/report.png")


def _add_learner(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "learner",
        allow_abbrev=False,
        help="the learned rate against simulated rate-limited servers (a fake clock, seconds)",
    )
    p.add_argument("--seconds", type=positive_float, default=30.0, help="per server")
    p.add_argument(
        "--warmup-s", type=float, default=5.0, help="utilisation counts the calls after this"
    )
    p.add_argument("--concurrency", type=positive_int, default=64, help="calls in flight")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a LearnConfig field (ratelimits/learned.py), e.g. --set window_s=0.05",
    )
    p.add_argument(
        "--random-429",
        type=float,
        default=0.0,
        metavar="P",
        help="a share of calls every server refuses at random, whatever the rate (0 <= P < 1)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser(scenario_names: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m bench",
        description="Benchmark the engine against the simulator, side by side with baselines.",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub, scenario_names)
    sub.add_parser("list", allow_abbrev=False, help="the scenarios and their settings")
    _add_estimate(sub)
    _add_bare(sub)
    _add_plot(sub)
    _add_learner(sub)
    return parser


def overrides(args: argparse.Namespace) -> Overrides:
    """The `run` flags that override the scenario."""
    sim: dict[str, object] = {f: getattr(args, f) for f in _SIM_FIELDS}
    engine: dict[str, object] = {f: getattr(args, f) for f in _ENGINE_FIELDS}
    sim |= {"rpm": args.rpm, "tpm": args.tpm}
    engine |= {
        "rpm": args.engine_rpm if args.engine_rpm is not None else args.rpm,
        "tpm": args.engine_tpm if args.engine_tpm is not None else args.tpm,
    }
    if args.sim_arg:
        sim["extra_args"] = tuple(args.sim_arg)
    if args.engine_arg:
        engine["extra_args"] = tuple(args.engine_arg)
    requests = {f: getattr(args, f) for f in _REQUEST_FIELDS}
    try:
        msgspec.convert({k: v for k, v in requests.items() if v is not None}, RequestSettings)
    except msgspec.ValidationError as exc:
        raise UsageError("--model/--max-tokens", str(exc)) from None
    return Overrides(
        jobs=args.jobs,
        concurrency=args.concurrency or (),
        variants=args.variants or (),
        seed=args.seed,
        repeat=args.repeat,
        sim=sim,
        engine=engine,
        requests=requests,
    )


def _stage_tokens(specs: list[str]) -> dict[str, StageTokens]:
    table = dict(DEFAULT_STAGE_TOKENS)
    for spec in specs:
        stage, _, counts = spec.partition("=")
        prompt, _, completion = counts.partition(":")
        if stage not in table or not prompt.isdigit() or not completion.isdigit():
            raise UsageError("--stage-tokens", f"expected STAGE=PROMPT:COMPLETION, got {spec!r}")
        table[stage] = StageTokens(int(prompt), int(completion))
    return table


def estimate_input(args: argparse.Namespace) -> EstimateInput:
    return EstimateInput(
        model=args.model,
        personas=args.personas,
        prompts_per_persona=args.prompts_per_persona,
        heldout_per_persona=args.heldout_per_persona,
        train_prompts=args.train_prompts,
        heldout_prompts=args.heldout_prompts,
        stage_tokens=_stage_tokens(args.stage_tokens),
        concurrency=args.concurrency,
        latency_ms=args.latency_ms,
        rpm=args.rpm,
        tpm=args.tpm,
    )


def to_json(value: msgspec.Struct) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
