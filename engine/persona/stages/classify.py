"""`python -m engine prompts-classify`: PRISM opening prompts -> the controversial ones.

    python -m engine prompts-classify --conversations PRISM_conversations.jsonl
        --out prompts.jsonl --run-dir DIR [--base-url URL] [--model M] [--concurrency N] [--seed S]

PERSONA.md section 2: the paper's rule filters (a `?`, at least five words), then identical
texts dropped (PRISM repeats some opening prompts), then one LLM classifier request per prompt
(engine.persona.stages.controversy), run as a `generate` job of RUN_DIR/classify.requests.jsonl
(custom_id =
the conversation id; engine.llm_stage). Prompts judged CONTROVERSIAL are written to --out in
our prompt format (topic "unknown"), in input order: usable with `generate --prompts-file`.

A failed call or a reply that is not a verdict is a failure, listed by id and left out of
--out; RUN_DIR/classify.report.json has the counts and every failure. Exit status: 0, or 3
when some prompt failed; 2 bad input; 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from engine.errors import UserError
from engine.exits import EXIT_FAILED_JOBS, EXIT_OK, EXIT_USAGE
from engine.llm_stage import (
    StageOptions,
    StageReplies,
    add_stage_arguments,
    run_async,
    run_stage,
    stage_options,
    write_if_changed,
)
from engine.persona.prompt_select import apply_rule_filters, drop_duplicate_texts
from engine.persona.prompts import PromptFileError, load_prism_conversations, write_prompts
from engine.persona.stages.controversy import (
    ClassifierConfig,
    UnparseableReplyError,
    Verdict,
    build_classifier_request,
    parse_classifier_response,
)
from schemas.prompt import Prompt

REPORT_FILE: Final = "classify.report.json"
_LISTED: Final = 20  # failures printed; the report has them all


class ClassifyFailure(msgspec.Struct, frozen=True):
    id: str
    reason: str


class ClassifyReport(msgspec.Struct, frozen=True):
    input: int  # conversations read
    dropped: dict[str, int]  # by the first rule failed, and duplicate texts
    classified: int  # prompts with a verdict
    kept: int  # CONTROVERSIAL: written to --out
    not_controversial: int
    failed: list[ClassifyFailure]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "prompts-classify",
        allow_abbrev=False,
        help="filter PRISM opening prompts and keep those an LLM judges controversial",
        description="PRISM conversations.jsonl -> rule filters -> LLM controversy classifier "
        "(a generate run in RUN_DIR) -> the controversial prompts in our prompt format.",
    )
    p.add_argument("--conversations", type=Path, required=True, help="PRISM conversations.jsonl")
    p.add_argument("--out", type=Path, required=True, help="prompt JSONL of the kept prompts")
    add_stage_arguments(p)
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        options = stage_options(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_async(lambda: classify_prompts(args.conversations, args.out, options))


def classifier_body(prompt: Prompt, config: ClassifierConfig, seed: int) -> dict[str, Any]:
    """The classifier request of engine.persona.stages.controversy, with the run's seed in the
    body."""
    return {**build_classifier_request(prompt, config), "seed": seed}


def _verdicts(
    prompts: Sequence[Prompt], replies: StageReplies
) -> tuple[dict[str, Verdict], list[ClassifyFailure]]:
    verdicts: dict[str, Verdict] = {}
    failures: list[ClassifyFailure] = []
    for prompt in prompts:
        if prompt.id in replies.failures:
            failures.append(ClassifyFailure(prompt.id, replies.failures[prompt.id]))
            continue
        try:
            verdicts[prompt.id] = parse_classifier_response(replies.bodies[prompt.id])
        except UnparseableReplyError as exc:
            failures.append(ClassifyFailure(prompt.id, str(exc)))
    return verdicts, failures


def _load(conversations: Path) -> list[Prompt] | None:
    try:
        return list(load_prism_conversations(conversations))
    except PromptFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: {conversations}: cannot read: {exc.strerror}", file=sys.stderr)
    return None


async def classify_prompts(conversations: Path, out: Path, options: StageOptions) -> int:
    """Filter, classify, write --out and the report; the command's exit status."""
    prompts = _load(conversations)
    if prompts is None:
        return EXIT_USAGE
    ruled = apply_rule_filters(prompts)
    unique = drop_duplicate_texts(ruled.kept)
    config = ClassifierConfig(model=options.model)
    bodies = {p.id: classifier_body(p, config, options.seed) for p in unique.kept}
    replies = await run_stage(options, options.run_dir, "classify", bodies)
    if isinstance(replies, int):
        return replies
    verdicts, failures = _verdicts(unique.kept, replies)
    kept = [p for p in unique.kept if verdicts.get(p.id) is Verdict.CONTROVERSIAL]
    write_prompts(out, kept)
    report = ClassifyReport(
        input=len(prompts),
        dropped={str(k): v for k, v in {**ruled.dropped, **unique.dropped}.items()},
        classified=len(verdicts),
        kept=len(kept),
        not_controversial=len(verdicts) - len(kept),
        failed=failures,
    )
    report_path = options.run_dir / REPORT_FILE
    write_if_changed(report_path, msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    _print_summary(report, out, report_path)
    return EXIT_FAILED_JOBS if failures else EXIT_OK


def _print_summary(report: ClassifyReport, out: Path, report_path: Path) -> None:
    dropped = ", ".join(f"{count} {reason}" for reason, count in report.dropped.items())
    print(
        f"prompts-classify: {report.input} conversations; dropped by rule: {dropped}; "
        f"classified {report.classified}: {report.kept} controversial, "
        f"{report.not_controversial} not controversial; failed {len(report.failed)}"
    )
    for failure in report.failed[:_LISTED]:
        print(f"  failed {failure.id}: {failure.reason}")
    if len(report.failed) > _LISTED:
        print(f"  ... and {len(report.failed) - _LISTED} more in {report_path}")
    print(f"wrote {report.kept} prompts -> {out} (report {report_path})")
