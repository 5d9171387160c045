"""`python -m engine evaluate`: the PERSONA Bench, run as an engine pipeline.

    python -m engine evaluate [--model M] [--judge-model J] [--mode MODE|all] [--n 700]
        [--k 16] [--seed 0] [--run-dir runs/evaluate] [--personas-file F] [--prompts-file F]
        [--answer-format marked|json] [every engine flag: --base-url, --concurrency, --rpm, …]

Exit status as `generate`: 0 done; 3 some jobs failed; 2 bad usage or input; 130 stopped
(rerun the same command to resume). The reports are written when the run ends.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import msgspec

from engine.argtypes import positive_int
from engine.config import add_engine_flags, resolve_or_report
from engine.errors import UserError
from engine.evaluation.samples import EvalSettings
from engine.evaluation.templates import MODES
from engine.exits import EXIT_USAGE
from workers import loops

_D = EvalSettings()


SIM_PASS_RATE_FLAG = "--pass-rate"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        allow_abbrev=False,
        help="PERSONA Bench: how well a model personalises, scored by a judge model",
        description="Answer (persona, held-out question) samples in each conditioning mode, "
        "have a judge say whether each answer needs more personalisation, and report accuracy "
        "per mode with intervals, paired comparisons, pass@k, cost (RUN_DIR/report.md, .json).",
    )
    _add_evaluate_arguments(p, "all", Path("runs/evaluate"), k=PASS_AT_K)
    nested = p.add_subparsers(dest="evaluate_command", required=False, metavar="{loo}")
    loo = nested.add_parser(
        "loo",
        allow_abbrev=False,
        help="leave-one-out: kappa between the judge's labels with and without each attribute",
        description="Every answer is judged with the full persona and, per attribute of "
        "--attributes, without it: Cohen's kappa (bootstrap interval) and accuracy change.",
    )
    loo.add_argument("--attributes", required=True, help="comma-separated attribute names")
    _add_evaluate_arguments(loo, "output_only", Path("runs/loo"), k=1)
    add_verify_parser(sub)


#: answers per sample of `evaluate` (pass@1..16, as the issue asks); `loo` judges one answer
PASS_AT_K = 16


def _add_evaluate_arguments(
    p: argparse.ArgumentParser, mode: str, run_dir: Path, *, k: int
) -> None:
    p.add_argument("--model", default=_D.model, help="the evaluated model (default: %(default)s)")
    p.add_argument("--judge-model", default=_D.judge_model, help="(default: %(default)s)")
    p.add_argument("--mode", choices=(*MODES, "all"), default=mode, help=f"(default: {mode})")
    p.add_argument("--n", type=positive_int, default=_D.n, help="samples (default: %(default)s)")
    p.add_argument(
        "--k",
        type=positive_int,
        default=k,
        help="answers per sample; >1 reports pass@1..k (default: %(default)s)",
    )
    p.add_argument("--run-dir", type=Path, default=run_dir)
    p.add_argument("--personas-file", type=Path, default=_D.personas_path)
    p.add_argument(
        "--prompts-file",
        type=Path,
        default=_D.prompts_path,
        help="questions come from its held-out split (default: the shipped set)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=_D.split_seed,
        help="seed of the train/held-out prompt split (default: %(default)s, as "
        "`generate`'s default)",
    )
    p.add_argument(
        "--answer-format",
        choices=("marked", "json"),
        default=_D.answer_format,
        help="marked: an ANSWER: section; json: response_format (default: marked)",
    )
    p.add_argument("--max-tokens", type=positive_int, default=_D.max_tokens)
    p.add_argument(
        "--judge-format",
        choices=("json_schema", "json_object", "none"),
        default=_D.judge_format,
        help="the judge's response_format; none: the prompt alone asks for JSON "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="ATTRIBUTE=VALUE",
        help="report a slice (repeat: each alone and all ANDed); low-high for numbers",
    )
    p.add_argument(
        "--sim-pass-rate",
        type=float,
        default=None,
        help="built-in simulator only: share of verdicts that need no revision",
    )
    add_engine_flags(p)
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    from engine.evaluation.pipeline import EvaluatePipeline  # noqa: PLC0415
    from engine.evaluation.slices import parse_clause  # noqa: PLC0415
    from engine.generate import GenerateOptions, generate  # noqa: PLC0415

    config = resolve_or_report(args)
    if config is None:
        return EXIT_USAGE
    settings = EvalSettings(
        model=args.model,
        judge_model=args.judge_model,
        modes=MODES if args.mode == "all" else (args.mode,),
        n=args.n,
        k=args.k,
        seed=config.run.seed,
        split_seed=args.split_seed,
        answer_format=args.answer_format,
        max_tokens=args.max_tokens,
        judge_format=args.judge_format,
        personas_path=str(args.personas_file),
        prompts_path=str(args.prompts_file),
        loo=tuple(a.strip() for a in getattr(args, "attributes", "").split(",") if a.strip()),
    )
    options = GenerateOptions.from_config(config, args.run_dir)
    builtin = not (config.base_url or os.environ.get("OPENAI_BASE_URL"))
    if args.sim_pass_rate is not None:
        extra = (SIM_PASS_RATE_FLAG, str(args.sim_pass_rate))
        options = msgspec.structs.replace(options, simulator_args=(*options.simulator_args, *extra))
    simulated = builtin or all(m.startswith("sim-") for m in (args.model, args.judge_model))
    command = shlex.join(["python", "-m", "engine", *sys.argv[1:]])
    try:
        where = tuple(parse_clause(text) for text in args.where)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    pipeline = EvaluatePipeline(settings, command, simulated, where)
    return loops.run(lambda: generate(options, pipeline))


def add_verify_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        allow_abbrev=False,
        help="a role-playing judge chooses between each sampled pair's original and revision",
        description="engine.evaluation.verify: the revision's preference rate with its "
        "interval and the position-bias rate; labels in agree's format.",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("runs/persona"),
        help="a finished generation run (its pairs.jsonl)",
    )
    p.add_argument("--out-dir", type=Path, help="queue and outputs (default: RUN_DIR/verify)")
    p.add_argument("--n", type=positive_int, default=500, help="pairs (default: %(default)s)")
    p.add_argument("--judge-model", default="sim-small", help="(default: %(default)s)")
    add_engine_flags(p)
    p.set_defaults(func=_verify_command)


def _verify_command(args: argparse.Namespace) -> int:
    from engine.evaluation import verify  # noqa: PLC0415
    from engine.generate import GenerateOptions, generate  # noqa: PLC0415

    config = resolve_or_report(args)
    if config is None:
        return EXIT_USAGE
    builtin = not (config.base_url or os.environ.get("OPENAI_BASE_URL"))
    try:
        pairs, digest = verify.read_pairs(args.run_dir)
        items = verify.draw_items(pairs, args.n, config.run.seed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    settings = verify.VerifySettings(
        pairs_digest=digest,
        source=str(args.run_dir),
        n=args.n,
        seed=config.run.seed,
        judge_model=args.judge_model,
        simulated=builtin or args.judge_model.startswith("sim-"),
    )
    options = GenerateOptions.from_config(config, args.out_dir or args.run_dir / "verify")
    return loops.run(lambda: generate(options, verify.VerifyPipeline(settings, items)))
