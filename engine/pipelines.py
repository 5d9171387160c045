"""The registered pipelines, by name: a module path each, imported only when a command needs
it (the engine core imports none of them).

A pipeline module provides `resume(queue) -> Pipeline` (the pipeline of an existing run, for
`export`); a pipeline that `generate` runs without --requests also provides
`add_generate_arguments(parser)` and `from_args(args) -> Pipeline`.
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Final, Protocol

from engine.pipeline import Pipeline
from engine.queue import WorkQueue

PIPELINES: Final = {
    "requests": "engine.requests",
    "persona": "engine.persona.pipeline",
    "evaluate": "engine.evaluation.pipeline",
    "verify": "engine.evaluation.verify",
}
#: what `generate` runs without --requests
DEFAULT_GENERATE: Final = "persona"


class PipelineModule(Protocol):
    async def resume(self, queue: WorkQueue) -> Pipeline: ...


class GeneratePipelineModule(PipelineModule, Protocol):
    def add_generate_arguments(self, parser: argparse._ActionsContainer) -> None: ...

    def from_args(self, args: argparse.Namespace) -> Pipeline: ...


def module_of(name: str) -> ModuleType:
    try:
        path = PIPELINES[name]
    except KeyError:
        raise LookupError(f"unknown pipeline {name!r} (known: {', '.join(PIPELINES)})") from None
    return importlib.import_module(path)


async def resume(name: str | None, queue: WorkQueue) -> Pipeline:
    """The pipeline of the run in `queue` (`name` None: a run from before names were kept,
    which is a --requests run)."""
    module: PipelineModule = module_of(name or "requests")
    return await module.resume(queue)


def generate_module(name: str = DEFAULT_GENERATE) -> GeneratePipelineModule:
    module: GeneratePipelineModule = module_of(name)
    return module
