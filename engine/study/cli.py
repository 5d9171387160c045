"""`python -m engine study {create,serve,export,report}`: the human verification study.

Exit status: 0 done (serve: stopped by SIGINT or SIGTERM); 2 bad usage or input (a folder that
is not a study, a run that is not finished, too few personas, a bad label file, a port that
cannot be bound), with an error naming the flag or file; nothing half-written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from engine.argtypes import non_negative_int, positive_int
from engine.errors import UserError
from engine.exits import EXIT_OK, EXIT_USAGE

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"


def _port(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {value}")
    return value


def _base_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"must start with http:// or https://, got {text!r}")
    return text


def _model(text: str) -> tuple[str, Path]:
    """NAME=PATH, or a bare PATH named after its folder (RUN/verify/verify.labels.jsonl: RUN)."""
    name, sep, path = text.partition("=")
    if not sep:
        labels = Path(text)
        folder = labels.parent.parent if labels.parent.name == "verify" else labels.parent
        return folder.name or text, labels
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "study",
        allow_abbrev=False,
        help="the human verification study: create, serve (web pages for raters), export, report",
        description="Raters role-play a persona and choose which of two answers it would "
        "prefer (paper section 4.2); their majority is compared with models' `verify` labels.",
    )
    nested = p.add_subparsers(
        dest="study_command", required=True, metavar="{create,serve,export,report}"
    )
    _add_create(nested)
    _add_serve(nested)
    _add_export(nested)
    _add_report(nested)


def _add_create(nested: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = nested.add_parser(
        "create",
        allow_abbrev=False,
        help="draw the items and rater links from a finished PERSONA run",
        description="Writes OUT/study.sqlite, OUT/instructions.md (edit it before the first "
        "answer), OUT/links.csv (one link per rater seat) and OUT/organiser.txt.",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("runs/persona"),
        help="a finished generation run (its pairs.jsonl) (default: %(default)s)",
    )
    p.add_argument("--personas", type=positive_int, default=20, help="(default: %(default)s)")
    p.add_argument(
        "--questions",
        type=positive_int,
        default=10,
        help="items per persona (default: %(default)s)",
    )
    p.add_argument(
        "--raters-per-persona",
        type=positive_int,
        default=4,
        help="seats (links) per persona (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("study"),
        help="a new or empty folder (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument(
        "--base-url",
        type=_base_url,
        default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
        help="written in front of each link in links.csv (default: %(default)s)",
    )
    p.set_defaults(func=_create)


def _add_serve(nested: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = nested.add_parser(
        "serve",
        allow_abbrev=False,
        help="serve the rater and organiser pages (127.0.0.1 unless --host)",
        description="Every answer is committed to STUDY/study.sqlite before the page moves on: "
        "stop and restart at any time. Prints the address and the organiser's link.",
    )
    p.add_argument("study", type=Path, metavar="STUDY")
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="0 picks a free port (default: %(default)s)",
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind; other than loopback, anyone who can reach it with a "
        "link can answer (default: %(default)s)",
    )
    p.set_defaults(func=_serve)


def _add_export(nested: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = nested.add_parser(
        "export",
        allow_abbrev=False,
        help="the majority label per item (agree's format), the unresolved items, every answer",
        description="Writes OUT (majority labels: `agree OUT verify.labels.jsonl`), "
        "OUT's .unresolved.jsonl (ties, all can't tell) and .raters.jsonl (every answer).",
    )
    p.add_argument("study", type=Path, metavar="STUDY")
    p.add_argument("--out", type=Path, help="(default: STUDY/human.jsonl)")
    p.set_defaults(func=_export)


def _add_report(nested: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = nested.add_parser(
        "report",
        allow_abbrev=False,
        help="Fleiss' kappa among raters; Cohen's kappa of each model with the majority",
        description="Writes report.md, report.png and report.json in the out dir.",
    )
    p.add_argument("study", type=Path, metavar="STUDY")
    p.add_argument(
        "--model",
        type=_model,
        action="append",
        default=[],
        dest="models",
        metavar="NAME=LABELS.jsonl",
        help="a model's verify labels (repeat); a bare path is named after its run",
    )
    p.add_argument("--out-dir", type=Path, help="(default: STUDY)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    p.set_defaults(func=_report)


def _reported(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_status

    return run


@_reported
def _create(args: argparse.Namespace) -> int:
    from engine.study import design  # noqa: PLC0415

    created = design.create(
        args.run_dir,
        args.out,
        personas=args.personas,
        questions=args.questions,
        raters_per_persona=args.raters_per_persona,
        seed=args.seed,
        base_url=args.base_url,
    )
    folder = created.folder
    print(f"study created in {folder}: {created.items} items, {created.seats} rater seats")
    print(f"edit {folder / design.INSTRUCTIONS_FILE} before the first answer if you wish")
    print(f"rater links: {folder / design.LINKS_FILE}")
    print(f"organiser page: {created.organiser_url}")
    print(f"serve it: python -m engine study serve {folder}")
    return EXIT_OK


@_reported
def _serve(args: argparse.Namespace) -> int:
    from engine.study import web  # noqa: PLC0415
    from workers import loops  # noqa: PLC0415

    try:
        loops.run(lambda: web.serve(args.study, args.host, args.port, _say))
    except OSError as exc:  # the address is taken or cannot be bound
        print(
            f"error: --host {args.host} --port {args.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return EXIT_USAGE
    return EXIT_OK


def _say(line: str) -> None:
    print(line, flush=True)


@_reported
def _export(args: argparse.Namespace) -> int:
    from engine.study import store, tally  # noqa: PLC0415

    study = store.load(args.study)
    counted = tally.tally(study, store.read_answers(args.study))
    paths = tally.export(counted, args.out or args.study / "human.jsonl")
    print(tally.summary(counted))
    print("written: " + ", ".join(str(p) for p in paths))
    return EXIT_OK


@_reported
def _report(args: argparse.Namespace) -> int:
    from engine.study import report, store  # noqa: PLC0415

    study = store.load(args.study)
    result = report.build(study, store.read_answers(args.study), args.models, args.seed)
    paths = report.write(result, args.out_dir or args.study)
    print(report.render(result), end="")
    print("written: " + ", ".join(str(p) for p in paths))
    return EXIT_OK
