"""What a pipeline contributes to a run; the engine core drives it and knows nothing else of it.

    prepare(queue)               fresh run: enqueue the initial jobs, each child with its
                                 `parent_id` (it waits until its parent is DONE, then the
                                 queue releases it), together with the pipeline's own records
                                 and meta values, in one transaction; resumed run: check that
                                 the run directory holds this pipeline's run with the same
                                 settings and reload what the pipeline keeps in memory
    build_requests(queue, jobs)  the requests of claimed jobs enqueued without one (children:
                                 their request depends on their parents' results, read with
                                 `queue.done_rows`); deterministic, so a rebuilt request after
                                 a crash is the same request
    check(job, result)           a reply's content is usable for its stage, or raise
                                 `workers.errors.InvalidOutput` (retryable)
    export(queue, run_dir, …)    what the pipeline writes when the run is done (pairs, reports),
                                 in the formats asked for (`export --format`, `generate
                                 --export-format`; `default_formats` without either)

Pipelines are registered by name in `engine.pipelines` and loaded when a command needs one; the
name is stored in the run's meta (`PIPELINE_KEY`) so that `export` finds the pipeline of a run
directory. A pipeline never touches storage except through `engine.queue.WorkQueue`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from engine.errors import SettingsError
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.job import ClaimedJob
from workers.client import CallResult

PIPELINE_KEY = "run.pipeline"
# The engine's own format: results.jsonl, a Batch API output line per finished call. Kept as
# jobs finish when a pipeline's default formats name it, else written on demand.
RESULTS_FORMAT = "results"


def chosen_formats(
    pipeline: Pipeline, asked: Sequence[str] | None, flag: str = "--format"
) -> tuple[str, ...]:
    """The formats `asked` for with `flag` (`all`: every one), checked against what `pipeline`
    offers; None: its defaults."""
    offered = (RESULTS_FORMAT, *pipeline.export_formats)
    if asked is None:
        return pipeline.default_formats
    if "all" in asked:
        return offered
    unknown = [f for f in asked if f not in offered]
    if unknown:
        raise SettingsError(
            f"{flag} {','.join(unknown)}: a {pipeline.name} run exports "
            f"{', '.join(offered)} (or all)"
        )
    return tuple(asked)


class Pipeline(Protocol):
    @property
    def name(self) -> str:
        """The registered name (`engine.pipelines.PIPELINES`), stored in the run's meta."""
        ...

    @property
    def export_formats(self) -> tuple[str, ...]:
        """The formats of the pipeline's own files, offered by `export --format`."""
        ...

    @property
    def default_formats(self) -> tuple[str, ...]:
        """What a finished run and a bare `export` write (may include `RESULTS_FORMAT`)."""
        ...

    async def prepare(self, queue: WorkQueue) -> None:
        """Enqueue the run, or check and reload it; `engine.errors.UserError` when the input
        or the settings cannot be used (nothing is enqueued then)."""
        ...

    async def build_requests(self, queue: WorkQueue, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """`jobs` with every empty payload filled in (same order)."""
        ...

    def check(self, job: ClaimedJob, result: CallResult) -> None:
        """Raise InvalidOutput when the reply does not follow the stage's format."""
        ...

    async def export(
        self,
        queue: WorkQueue,
        run_dir: Path,
        prices: Mapping[str, Price],
        formats: Collection[str],
    ) -> str | None:
        """Write the pipeline's own outputs in `formats` (some of `export_formats`); return a
        line for the user (None: nothing)."""
        ...
