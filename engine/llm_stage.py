"""An optional LLM stage as an engine job: request file in, one reply (or failure) per id out.

The stages (engine.persona.stages.classify, engine.persona.stages.enrich) build chat-completions
bodies, and `run_stage` writes them to `RUN_DIR/NAME.requests.jsonl` (OpenAI Batch API input,
custom_id = the item's id), runs that file through `engine.generate.generate` (queue, retries,
rate limits, cache and resume come with it), and reads `RUN_DIR/results.jsonl` and
`errors.jsonl` back.

The request file is rewritten only when its bytes change, so a rerun of the same command finds
the file already enqueued and the run complete: no call is made again. A run directory keeps
the jobs of earlier request files too; only the ids asked for now are read back. A request
whose body changed for an id already in the run directory (another model, seed or input text)
is refused by the queue, exit 2: use a new --run-dir (unchanged requests come from the cache).

The engine retries failed calls; it does not check reply formats of a request-file run, so a
reply that does not parse is the stage's failure, reported by id. That reply is in the run and
the cache: to ask again, use a new --run-dir with --no-cache (or another --seed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from engine.config import EngineConfig, add_engine_flags, resolve
from engine.exits import EXIT_FAILED_JOBS, EXIT_OK
from engine.generate import GenerateOptions, generate
from engine.output import ERRORS, RESULTS
from engine.requests import RequestsPipeline
from schemas.batch import BatchInputLine, BatchOutputLine, batch_output_decoder
from schemas.openai import chat_response_decoder
from workers import loops

DEFAULT_MODEL: Final = "sim-small"
_line_encoder: Final = msgspec.json.Encoder(order="sorted")


class StageOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a stage's requests are run (shared by both commands; see `add_stage_arguments`)."""

    run_dir: Path
    model: str = DEFAULT_MODEL
    engine: EngineConfig = EngineConfig()

    @property
    def seed(self) -> int:
        return self.engine.run.seed


class StageReplies(msgspec.Struct, frozen=True):
    """What came back for the ids asked: response body by id, failure reason by id."""

    bodies: dict[str, bytes]
    failures: dict[str, str]


class UnusableReplyError(ValueError):
    """A reply body with no usable text: not a completion, no choices, empty, or truncated."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every stage takes: the engine's (as `generate`'s), --run-dir and --model."""
    parser.add_argument("--run-dir", type=Path, required=True, help="queue, requests, outputs")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="(default: %(default)s)")
    add_engine_flags(parser)


def stage_options(args: argparse.Namespace) -> StageOptions:
    """The stage's options; SettingsError when --config cannot be used."""
    return StageOptions(run_dir=args.run_dir, model=args.model, engine=resolve(args))


def run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a command's coroutine on uvloop when it is installed (as engine.cli does)."""
    return loops.run(main)


def encode_requests(bodies: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Batch API input lines, in the mapping's order (keys sorted: same bodies, same bytes)."""
    return b"".join(
        _line_encoder.encode(BatchInputLine(custom_id=custom_id, body=dict(body))) + b"\n"
        for custom_id, body in bodies.items()
    )


def write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically unless the file already holds exactly `data` (its mtime then stays)."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def reply_text(body: bytes) -> str:
    """The first choice's text of a chat completion; UnusableReplyError when there is none."""
    try:
        response = chat_response_decoder.decode(body)
    except msgspec.DecodeError:
        raise UnusableReplyError("the response body is not a chat completion") from None
    if not response.choices:
        raise UnusableReplyError("the response has no choices")
    choice = response.choices[0]
    if choice.finish_reason == "length":
        raise UnusableReplyError("the reply was cut off at max_tokens")
    if not choice.message.content:
        raise UnusableReplyError("the reply is empty")
    return choice.message.content


async def run_stage(
    options: StageOptions, run_dir: Path, name: str, bodies: Mapping[str, Mapping[str, Any]]
) -> StageReplies | int:
    """Run `bodies` (custom_id -> chat body) through `generate` in `run_dir`.

    Returns the replies, or `generate`'s exit status when it did not finish the run (bad
    input, interrupted). Nothing to ask: no run at all, empty replies.
    """
    if not bodies:
        return StageReplies(bodies={}, failures={})
    requests = run_dir / f"{name}.requests.jsonl"
    write_if_changed(requests, encode_requests(bodies))  # creates run_dir too
    print(f"{name}: {len(bodies)} requests -> {requests}")
    sys.stdout.flush()
    code = await generate(
        GenerateOptions.from_config(options.engine, run_dir), RequestsPipeline(requests)
    )
    if code not in (EXIT_OK, EXIT_FAILED_JOBS):
        return code
    return read_replies(run_dir, bodies.keys())


def read_replies(run_dir: Path, wanted: Iterable[str]) -> StageReplies:
    """Response bodies and failures for the ids in `wanted`, from a run's output files."""
    ids = set(wanted)
    bodies: dict[str, bytes] = {}
    for line in _output_lines(run_dir / RESULTS):
        if line.custom_id in ids and line.response is not None:
            bodies[line.custom_id] = bytes(line.response.body)
    failures: dict[str, str] = {}
    for line in _output_lines(run_dir / ERRORS):
        if line.custom_id in ids and line.custom_id not in bodies:
            error = line.error
            failures[line.custom_id] = f"{error.code}: {error.message}" if error else "failed"
    for custom_id in ids - bodies.keys() - failures.keys():
        failures[custom_id] = "no result in the run directory"
    return StageReplies(bodies=bodies, failures=failures)


def _output_lines(path: Path) -> Iterator[BatchOutputLine]:
    """The lines of a Batch API output file, streamed (none when it does not exist)."""
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                yield batch_output_decoder.decode(raw)
