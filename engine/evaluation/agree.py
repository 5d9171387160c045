"""`python -m engine agree A.jsonl B.jsonl [--json]`: Cohen's kappa between two label files.

A label file is JSONL, one item a line: `{"id": <item id>, "label": <string, number or bool>}`
plus any other fields (ignored); items are matched by `id`. Printed: the items in common,
raw agreement, kappa with its paired bootstrap 95 % interval, the confusion table. `--json`:
one object with n, agreement, kappa, kappa_low, kappa_high, labels, confusion, only_a, only_b.
Bad lines, duplicate ids or no common id: an error naming the file (and line), exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from engine.errors import InputError, UserError
from engine.evaluation import stats
from engine.exits import EXIT_OK

Label = str | int | float | bool


class LabelLine(msgspec.Struct, frozen=True):
    id: str | int
    label: Label


class AgreeReport(stats.Agreement, frozen=True):
    only_a: int = 0  # ids in A only
    only_b: int = 0


_line_decoder = msgspec.json.Decoder(LabelLine)


def label_text(label: Label) -> str:
    """One spelling per label: strings as they are, other values as JSON (true, 1, 0.5)."""
    return label if isinstance(label, str) else msgspec.json.encode(label).decode()


def read_labels(path: Path) -> dict[str, str]:
    """id → label of a label file; InputError naming the file and line."""
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror}") from None
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            line = _line_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise InputError(path, number, f'not a label line {{"id", "label"}}: {exc}') from None
        key = str(line.id)
        if key in labels:
            raise InputError(path, number, f"duplicate id {key!r} (line {lines[key]})")
        labels[key], lines[key] = label_text(line.label), number
    if not labels:
        raise InputError(path, None, "no labels")
    return labels


def agree(a_path: Path, b_path: Path, seed: int = 0) -> AgreeReport:
    a, b = read_labels(a_path), read_labels(b_path)
    common = [key for key in a if key in b]
    if not common:
        raise InputError(b_path, None, f"no id in common with {a_path}")
    result = stats.agreement([a[k] for k in common], [b[k] for k in common], seed)
    return AgreeReport(
        **msgspec.structs.asdict(result), only_a=len(a) - len(common), only_b=len(b) - len(common)
    )


def render(report: AgreeReport, a_name: str, b_name: str) -> str:
    width = max(6, *(len(label) for label in report.labels)) + 2
    lines = [
        f"items in common: {report.n} (only in A: {report.only_a}, only in B: {report.only_b})",
        f"raw agreement: {report.agreement:.3f}",
        f"Cohen's kappa: {report.kappa:.3f} "
        f"[95 % bootstrap {report.kappa_low:.3f}, {report.kappa_high:.3f}]",
        "",
        f"confusion (rows: A = {a_name}, columns: B = {b_name})",
        " " * width + "".join(label.rjust(width) for label in report.labels),
    ]
    for label, row in zip(report.labels, report.confusion, strict=True):
        lines.append(label.ljust(width) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agree",
        allow_abbrev=False,
        help="Cohen's kappa (with interval), agreement and confusion between two label files",
    )
    p.add_argument("a", type=Path, metavar="A.jsonl")
    p.add_argument("b", type=Path, metavar="B.jsonl")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        report = agree(args.a, args.b, args.seed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print(render(report, str(args.a), str(args.b)))
    return EXIT_OK
