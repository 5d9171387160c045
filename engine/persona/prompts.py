"""The PERSONA prompt set on disk: load ours, stream PRISM's, build the shipped default file.

    python -m engine.persona.prompts build [--out PATH]   write the default set
                                                          (engine/data/prompts.jsonl)
    python -m engine.persona.prompts check [--path PATH]  exit 1 unless the file matches
                                                          what build writes
(`python -m engine.prompts` forwards here.)

Our file: one `{"id", "topic", "text"}` object a line (schemas.prompt.Prompt). PRISM's
`conversations.jsonl` (Hugging Face schema) has no topic field, so its prompts get the topic
"unknown" and the conversation id as prompt id. Filters and the split are in
engine.persona.prompt_select and re-exported here.

Errors in a prompt file name the file and the line:

    PromptFileError
     ├── MalformedLineError    not JSON, a field of the wrong type, or an unknown field
     ├── MissingFieldError     a required field is absent
     ├── EmptyFieldError       a required field is empty or only whitespace
     ├── DuplicateIdError      the id appeared on an earlier line
     └── DuplicateTextError    the text appeared on an earlier line (ours only; after
                               normalisation: case and runs of whitespace ignored)

QuestionDataError: a question in engine/prompt_data breaks a rule of the shipped set.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

import msgspec

from engine.errors import UserError
from engine.persona.paths import DEFAULT_PROMPTS_PATH
from engine.persona.prompt_data import QUESTIONS_BY_TOPIC
from engine.persona.prompt_select import (
    DropReason,
    FilterResult,
    PromptSplit,
    apply_rule_filters,
    drop_duplicate_texts,
    normalise_text,
    paper_split_sizes,
    rule_failure,
    split_prompts,
)
from schemas.prompt import Prompt, prism_line_decoder, prompt_encoder, prompt_line_decoder

__all__ = [
    "DEFAULT_PROMPTS_PATH",
    "PRISM_TOPIC",
    "DropReason",
    "DuplicateIdError",
    "DuplicateTextError",
    "EmptyFieldError",
    "FilterResult",
    "MalformedLineError",
    "MissingFieldError",
    "PromptFileError",
    "PromptSplit",
    "QuestionDataError",
    "apply_rule_filters",
    "build_default_prompts",
    "default_prompts",
    "drop_duplicate_texts",
    "encode_prompts",
    "load_prism_conversations",
    "load_prompts",
    "main",
    "paper_split_sizes",
    "split_prompts",
    "write_prompts",
]

PRISM_TOPIC: Final = "unknown"
_JOINED_QUESTIONS: Final = re.compile(r"\?\S")  # "...?Next" means a comma went missing


class PromptFileError(UserError):
    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line


class MalformedLineError(PromptFileError):
    def __init__(self, path: Path, line: int, detail: str) -> None:
        super().__init__(path, line, f"malformed line: {detail}")
        self.detail = detail


class MissingFieldError(PromptFileError):
    def __init__(self, path: Path, line: int, field: str) -> None:
        super().__init__(path, line, f"missing field {field!r}")
        self.field = field


class EmptyFieldError(PromptFileError):
    def __init__(self, path: Path, line: int, field: str) -> None:
        super().__init__(path, line, f"field {field!r} is empty")
        self.field = field


class DuplicateIdError(PromptFileError):
    def __init__(self, path: Path, line: int, prompt_id: str, first_line: int) -> None:
        super().__init__(path, line, f"id {prompt_id!r} already used on line {first_line}")
        self.prompt_id = prompt_id
        self.first_line = first_line


class DuplicateTextError(PromptFileError):
    def __init__(self, path: Path, line: int, first_line: int) -> None:
        super().__init__(path, line, f"same text as line {first_line}")
        self.first_line = first_line


class QuestionDataError(ValueError):
    def __init__(self, topic: str, position: int, text: str, problem: str) -> None:
        super().__init__(f"{topic} question {position}: {problem}: {text!r}")
        self.topic = topic
        self.position = position
        self.text = text
        self.problem = problem


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for every non-blank line; numbers count blank lines too."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, raw


def _required(path: Path, line: int, field: str, value: str | msgspec.UnsetType) -> str:
    if isinstance(value, msgspec.UnsetType):
        raise MissingFieldError(path, line, field)
    if not value.strip():
        raise EmptyFieldError(path, line, field)
    return value


def load_prompts(path: Path) -> list[Prompt]:
    """Read our prompt file, rejecting it at the first bad line (see the module doc)."""
    prompts: list[Prompt] = []
    id_lines: dict[str, int] = {}
    text_lines: dict[str, int] = {}
    for number, raw in _numbered_lines(path):
        try:
            line = prompt_line_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise MalformedLineError(path, number, str(exc)) from None
        prompt = Prompt(
            id=_required(path, number, "id", line.id),
            topic=_required(path, number, "topic", line.topic),
            text=_required(path, number, "text", line.text),
        )
        if prompt.id in id_lines:
            raise DuplicateIdError(path, number, prompt.id, id_lines[prompt.id])
        key = normalise_text(prompt.text)
        if key in text_lines:
            raise DuplicateTextError(path, number, text_lines[key])
        id_lines[prompt.id] = number
        text_lines[key] = number
        prompts.append(prompt)
    return prompts


def load_prism_conversations(path: Path) -> Iterator[Prompt]:
    """Stream PRISM's opening prompts, one per conversation, as prompts of topic "unknown".

    Texts are stripped of surrounding whitespace and may be empty (the filters drop those);
    repeated texts are kept (see `drop_duplicate_texts`). A repeated conversation id, or a
    line without `conversation_id` or `opening_prompt`, raises when the iterator reaches it.
    """
    id_lines: dict[str, int] = {}
    for number, raw in _numbered_lines(path):
        try:
            line = prism_line_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise MalformedLineError(path, number, str(exc)) from None
        raw_id = line.conversation_id
        conversation_id = raw_id if isinstance(raw_id, str | msgspec.UnsetType) else str(raw_id)
        prompt_id = _required(path, number, "conversation_id", conversation_id)
        if isinstance(line.opening_prompt, msgspec.UnsetType):
            raise MissingFieldError(path, number, "opening_prompt")
        if prompt_id in id_lines:
            raise DuplicateIdError(path, number, prompt_id, id_lines[prompt_id])
        id_lines[prompt_id] = number
        yield Prompt(id=prompt_id, topic=PRISM_TOPIC, text=line.opening_prompt.strip())


def question_problem(text: str) -> str | None:
    """Why a question may not go in the shipped set, or None if it may."""
    reason = rule_failure(text)
    if reason is not None:
        return f"fails the {reason} rule"
    if text != text.strip() or "  " in text:
        return "stray whitespace"
    if not text.isascii():
        return "non-ASCII characters (use straight quotes and plain hyphens)"
    if _JOINED_QUESTIONS.search(text):
        return "a '?' followed directly by text (missing comma between two questions?)"
    return None


def default_prompts() -> list[Prompt]:
    """The shipped set from engine/prompt_data, ids q0001... in order; checks every question."""
    prompts: list[Prompt] = []
    first_seen: dict[str, str] = {}
    for topic, questions in QUESTIONS_BY_TOPIC:
        for position, text in enumerate(questions, start=1):
            problem = question_problem(text)
            key = normalise_text(text)
            if problem is None and key in first_seen:
                problem = f"duplicates {first_seen[key]}"
            if problem is not None:
                raise QuestionDataError(topic, position, text, problem)
            prompt_id = f"q{len(prompts) + 1:04d}"
            first_seen[key] = prompt_id
            prompts.append(Prompt(id=prompt_id, topic=topic, text=text))
    return prompts


def encode_prompts(prompts: Iterable[Prompt]) -> bytes:
    return b"".join(prompt_encoder.encode(prompt) + b"\n" for prompt in prompts)


def write_prompts(path: Path, prompts: Iterable[Prompt]) -> None:
    """Write a prompt file atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(encode_prompts(prompts))
    os.replace(temporary, path)


def build_default_prompts(path: Path = DEFAULT_PROMPTS_PATH) -> int:
    """Write the shipped set to `path`; return how many prompts were written."""
    prompts = default_prompts()
    write_prompts(path, prompts)
    return len(prompts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m engine.persona.prompts")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", allow_abbrev=False, help="write the default prompt set")
    build.add_argument("--out", type=Path, default=DEFAULT_PROMPTS_PATH)
    check = commands.add_parser(
        "check", allow_abbrev=False, help="verify a file matches the default prompt set"
    )
    check.add_argument("--path", type=Path, default=DEFAULT_PROMPTS_PATH)
    args = parser.parse_args(argv)
    if args.command == "build":
        count = build_default_prompts(args.out)
        sys.stdout.write(f"wrote {count} prompts to {args.out}\n")
        return 0
    expected = encode_prompts(default_prompts())
    if args.path.is_file() and args.path.read_bytes() == expected:
        sys.stdout.write(f"{args.path} is up to date\n")
        return 0
    sys.stderr.write(
        f"{args.path} differs from the default set: run `python -m engine.persona.prompts build`\n"
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
