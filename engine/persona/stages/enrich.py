"""`python -m engine personas-enrich`: LLM enrichment, then the LLM consistency check.

    python -m engine personas-enrich --in personas.jsonl --out enriched.jsonl --run-dir DIR
        [--base-url URL] [--model M] [--check-model M] [--concurrency N] [--seed S]
        [--drop-implausible]

Stage A (RUN_DIR/enrich) rewrites each persona's open-ended fields, stage B (RUN_DIR/check)
asks whether each enriched persona is plausible; both are `generate` runs of a request file
(engine.llm_stage), so the same command resumes and a finished run makes no call again. The
prompts and parsers are in engine.persona.stages.enrichment.

Out: the personas in input order (the same schema, text rendered again), without those that
failed (a failed call, or a reply that does not parse: reported by persona id, never kept) and,
with --drop-implausible, without the implausible ones (otherwise kept and listed).
RUN_DIR/enrich.report.json lists every failure, every implausible persona and every id left
out. Exit status: 0, or 3 when some persona failed; 2 bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from engine.errors import InputError, UserError
from engine.exits import EXIT_FAILED_JOBS, EXIT_OK, EXIT_USAGE
from engine.llm_stage import (
    StageOptions,
    StageReplies,
    UnusableReplyError,
    add_stage_arguments,
    reply_text,
    run_async,
    run_stage,
    stage_options,
    write_if_changed,
)
from engine.persona.run import load_personas
from engine.persona.stages.enrichment import (
    CheckConfig,
    CheckVerdict,
    EnrichConfig,
    MalformedReplyError,
    build_check_request,
    build_enrichment_request,
    enriched_persona,
    fields_to_enrich,
    parse_check_reply,
    parse_enrichment_reply,
)
from schemas.persona import Persona, persona_encoder

REPORT_FILE: Final = "enrich.report.json"
_LISTED: Final = 20  # failures and implausible ids printed; the report has them all


class Failure(msgspec.Struct, frozen=True):
    id: str
    stage: str  # "enrich" or "check"
    reason: str


class Implausible(msgspec.Struct, frozen=True):
    id: str
    reason: str


class EnrichReport(msgspec.Struct, frozen=True):
    input: int
    enriched: int  # personas whose fields were rewritten
    unchanged: int  # personas with none of the fields (checked as they are)
    checked: int
    plausible: int
    implausible: list[Implausible]
    failed: list[Failure]
    dropped: list[str]  # ids not written: failed, and implausible with --drop-implausible
    written: int
    drop_implausible: bool


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "personas-enrich",
        allow_abbrev=False,
        help="LLM enrichment of open-ended persona fields, then an LLM plausibility check",
        description="Stage A rewrites the detailed job description, personal time and "
        "lifestyle of each persona (RUN_DIR/enrich); stage B asks whether each enriched persona "
        "is plausible for one real person (RUN_DIR/check). Rerun the same command to resume.",
    )
    p.add_argument(
        "--in", dest="source", metavar="FILE", type=Path, required=True, help="persona JSONL"
    )
    p.add_argument("--out", type=Path, required=True, help="enriched persona JSONL")
    p.add_argument("--check-model", help="model of the consistency check (default: --model)")
    p.add_argument(
        "--drop-implausible",
        action="store_true",
        help="leave implausible personas out (default: keep them and list them)",
    )
    add_stage_arguments(p)
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        options = stage_options(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    check_model: str = args.check_model or options.model
    return run_async(
        lambda: enrich_personas(
            args.source, args.out, options, check_model, drop_implausible=args.drop_implausible
        )
    )


def _enrich(
    personas: list[Persona], replies: StageReplies, failures: list[Failure]
) -> list[Persona]:
    """Personas with their fields rewritten (or unchanged when they have none to rewrite)."""
    out: list[Persona] = []
    for persona in personas:
        fields = fields_to_enrich(persona)
        if not fields:
            out.append(persona)
        elif persona.id in replies.failures:
            failures.append(Failure(persona.id, "enrich", replies.failures[persona.id]))
        else:
            try:
                text = reply_text(replies.bodies[persona.id])
                values = parse_enrichment_reply(text, fields)
            except (UnusableReplyError, MalformedReplyError) as exc:
                failures.append(Failure(persona.id, "enrich", str(exc)))
                continue
            out.append(enriched_persona(persona, values))
    return out


def _check(replies: StageReplies, failures: list[Failure]) -> dict[str, CheckVerdict]:
    verdicts: dict[str, CheckVerdict] = {}
    for persona_id in sorted({*replies.bodies, *replies.failures}):
        if persona_id in replies.failures:
            failures.append(Failure(persona_id, "check", replies.failures[persona_id]))
            continue
        try:
            verdicts[persona_id] = parse_check_reply(reply_text(replies.bodies[persona_id]))
        except (UnusableReplyError, MalformedReplyError) as exc:
            failures.append(Failure(persona_id, "check", str(exc)))
    return verdicts


async def enrich_personas(
    source: Path, out: Path, options: StageOptions, check_model: str, *, drop_implausible: bool
) -> int:
    """Both stages, the output file and the report; the command's exit status."""
    try:
        personas = load_personas(source)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = EnrichConfig(model=options.model)
    bodies: dict[str, dict[str, Any]] = {}
    for persona in personas:
        body = build_enrichment_request(persona, config, options.seed)
        if body is not None:
            bodies[persona.id] = body
    enrich_replies = await run_stage(options, options.run_dir / "enrich", "enrich", bodies)
    if isinstance(enrich_replies, int):
        return enrich_replies
    failures: list[Failure] = []
    enriched = _enrich(personas, enrich_replies, failures)
    check = CheckConfig(model=check_model)
    check_bodies = {p.id: build_check_request(p, check, options.seed) for p in enriched}
    check_replies = await run_stage(options, options.run_dir / "check", "check", check_bodies)
    if isinstance(check_replies, int):
        return check_replies
    verdicts = _check(check_replies, failures)
    written = [
        p
        for p in enriched
        if p.id in verdicts and (verdicts[p.id].plausible or not drop_implausible)
    ]
    write_if_changed(out, b"".join(persona_encoder.encode(p) + b"\n" for p in written))
    report = _report(personas, len(bodies), verdicts, failures, written, drop_implausible)
    report_path = options.run_dir / REPORT_FILE
    write_if_changed(report_path, msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    _print_summary(report, out, report_path)
    return EXIT_FAILED_JOBS if failures else EXIT_OK


def _report(
    personas: list[Persona],
    n_enriched: int,
    verdicts: dict[str, CheckVerdict],
    failures: list[Failure],
    written: list[Persona],
    drop_implausible: bool,
) -> EnrichReport:
    kept = {p.id for p in written}
    implausible = [
        Implausible(persona_id, verdict.reason)
        for persona_id, verdict in verdicts.items()
        if not verdict.plausible
    ]
    return EnrichReport(
        input=len(personas),
        enriched=n_enriched - sum(1 for f in failures if f.stage == "enrich"),
        unchanged=len(personas) - n_enriched,
        checked=len(verdicts),
        plausible=len(verdicts) - len(implausible),
        implausible=implausible,
        failed=sorted(failures, key=lambda f: f.id),
        dropped=[p.id for p in personas if p.id not in kept],
        written=len(written),
        drop_implausible=drop_implausible,
    )


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_summary(report: EnrichReport, out: Path, report_path: Path) -> None:
    print(
        f"personas-enrich: {report.input} personas; enriched {report.enriched}, "
        f"{report.unchanged} with nothing to enrich; checked {report.checked}: "
        f"{report.plausible} plausible, {len(report.implausible)} implausible; "
        f"failed {len(report.failed)}"
    )
    for failure in report.failed[:_LISTED]:
        print(f"  failed ({failure.stage}) {failure.id}: {_short(failure.reason)}")
    for item in report.implausible[:_LISTED]:
        print(f"  implausible {item.id}: {_short(item.reason)}")
    hidden = max(0, len(report.failed) - _LISTED) + max(0, len(report.implausible) - _LISTED)
    if hidden:
        print(f"  ... and {hidden} more in {report_path}")
    action = "dropped" if report.drop_implausible else "kept"
    print(
        f"wrote {report.written} personas -> {out} (implausible {action}; "
        f"{len(report.dropped)} left out; report {report_path})"
    )
