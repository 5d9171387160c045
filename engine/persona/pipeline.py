"""The PERSONA DPF pipeline (`generate` without --requests), as the engine runs it.

prepare   fresh run: plan (personas x prompts → pairs), then the graph's jobs, the
          personas, prompts and pair index as records, the signature and graph config as
          meta, all in one enqueue; resumed run: same signature, or SettingsChanged
requests  children's requests built when claimed (engine.persona.graph)
check     critique and revision replies carry their markers, answers are not empty
export    pairs.jsonl, pairs.dpo.jsonl, pairs.release.jsonl (engine.persona.export)
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from pathlib import Path

import msgspec

from engine.argtypes import positive_int
from engine.errors import SettingsError
from engine.persona.export import (
    DEFAULT_FORMATS,
    FORMATS,
    PAIR_KIND,
    export_pairs,
    file_names,
)
from engine.persona.graph import GraphConfig, PersonaGraph
from engine.persona.run import PersonaRunOptions, SettingsChanged, plan, signature
from engine.pipeline import PIPELINE_KEY
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.job import ClaimedJob
from schemas.prompt import Prompt
from workers.client import CallResult

NAME = "persona"
SIGNATURE_KEY = "graph.signature"
CONFIG_KEY = "graph.config"
PERSONA_KIND = "persona"
PROMPT_KIND = "prompt"
_DEFAULTS = PersonaRunOptions()


class PersonaText(msgspec.Struct, frozen=True, gc=False):
    """A persona as the run keeps it: the rendered text is all the requests need."""

    id: str
    text: str


_encoder = msgspec.json.Encoder()
_persona_decoder = msgspec.json.Decoder(PersonaText)
_prompt_decoder = msgspec.json.Decoder(Prompt)
_config_decoder = msgspec.json.Decoder(GraphConfig)


class PersonaPipeline:
    name = NAME
    export_formats = FORMATS
    default_formats = DEFAULT_FORMATS

    def __init__(self, options: PersonaRunOptions) -> None:
        self.options = options
        self._graph: PersonaGraph | None = None
        self._personas: dict[str, str] = {}
        self._prompts: dict[str, Prompt] = {}

    @property
    def graph(self) -> PersonaGraph:
        if self._graph is None:
            raise RuntimeError("prepare() or resume() first")
        return self._graph

    async def prepare(self, queue: WorkQueue) -> None:
        wanted = signature(self.options)
        stored = await queue.get_meta(SIGNATURE_KEY)
        if stored is not None:
            if stored != wanted:
                raise SettingsChanged(
                    "this run directory was started with other personas, prompts, sizes, seed, "
                    "models or templates: use a new --run-dir (unchanged requests come from "
                    "the cache)"
                )
            await self._load(queue)
            return
        if (await queue.counts()).total:
            raise SettingsChanged("this run directory holds a --requests run, not a PERSONA run")
        personas, prompts, pairs = plan(self.options)
        self._personas = {p.id: p.text for p in personas}
        self._prompts = {q.id: q for q in prompts}
        self._graph = self._make_graph(self.options.graph)
        # generators: the queue writes them in chunks (317,200 encoded pairs held at once
        # would add tens of MB to the run's peak memory)
        records = {
            PERSONA_KIND: ((p.id, _encoder.encode(PersonaText(p.id, p.text))) for p in personas),
            PROMPT_KIND: ((q.id, _encoder.encode(q)) for q in prompts),
            PAIR_KIND: ((f"{p.persona_id}:{p.prompt_id}", _encoder.encode(p)) for p in pairs),
        }
        meta = {
            SIGNATURE_KEY: wanted,
            CONFIG_KEY: _encoder.encode(self.options.graph).decode(),
            PIPELINE_KEY: NAME,
        }
        await queue.enqueue(self._graph.jobs(pairs), records, meta)

    async def _load(self, queue: WorkQueue) -> None:
        """The graph of a run already enqueued, from the queue's records and meta."""
        config = await queue.get_meta(CONFIG_KEY)
        if config is None:
            raise SettingsError("this run directory has no PERSONA graph configuration")
        async for _, value in queue.iter_records(PERSONA_KIND):
            persona = _persona_decoder.decode(value)
            self._personas[persona.id] = persona.text
        async for _, value in queue.iter_records(PROMPT_KIND):
            prompt = _prompt_decoder.decode(value)
            self._prompts[prompt.id] = prompt
        self._graph = self._make_graph(_config_decoder.decode(config))

    def _make_graph(self, config: GraphConfig) -> PersonaGraph:
        texts = {q.id: q.text for q in self._prompts.values()}
        return PersonaGraph(config, self._personas, texts)

    async def build_requests(self, queue: WorkQueue, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        return await self.graph.build_requests(queue, jobs)

    def check(self, job: ClaimedJob, result: CallResult) -> None:
        PersonaGraph.validate(job, result)

    async def export(
        self,
        queue: WorkQueue,
        run_dir: Path,
        prices: Mapping[str, Price],
        formats: Collection[str],
    ) -> str | None:
        if not set(formats) & set(FORMATS):
            return None
        count = await export_pairs(queue, run_dir, prices, self._personas, self._prompts, formats)
        names = file_names(formats)
        more = f" (+ {', '.join(names[1:])})" if len(names) > 1 else ""
        return f"exported {count} pairs -> {run_dir / names[0]}{more}"


async def resume(queue: WorkQueue) -> PersonaPipeline:
    """The pipeline of a PERSONA run already in `queue` (for `export`)."""
    pipeline = PersonaPipeline(_DEFAULTS)
    await pipeline._load(queue)
    return pipeline


def add_generate_arguments(p: argparse._ActionsContainer) -> None:
    """The PERSONA flags of `generate` (defaults from `PersonaRunOptions`/`GraphConfig`)."""
    d, g = _DEFAULTS, _DEFAULTS.graph
    p.add_argument(
        "--personas",
        type=positive_int,
        default=None,
        help="use the first N personas (default: all)",
    )
    p.add_argument(
        "--prompts-per-persona",
        type=positive_int,
        default=d.prompts_per_persona,
        help="pairs per persona, split 50/25/25 train/test_seen/test_unseen (default: %(default)s)",
    )
    p.add_argument(
        "--personas-file", type=Path, default=d.personas_path, help="(default: the shipped set)"
    )
    p.add_argument(
        "--prompts-file", type=Path, default=d.prompts_path, help="(default: the shipped set)"
    )
    p.add_argument(
        "--model", default=g.answer_model, help="model of every stage (default: %(default)s)"
    )
    p.add_argument("--answer-model", help="model of the answer stage (default: --model)")
    p.add_argument("--critique-model", help="model of the critique stage (default: --model)")
    p.add_argument("--revise-model", help="model of the revise stage (default: --model)")
    p.add_argument(
        "--temperature", type=float, default=g.temperature, help="(default: %(default)s)"
    )
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=g.answer_max_tokens,
        help="completion cap of each stage's calls (default: %(default)s)",
    )


def from_args(args: argparse.Namespace) -> PersonaPipeline:
    graph = GraphConfig(
        answer_model=args.answer_model or args.model,
        critique_model=args.critique_model or args.model,
        revise_model=args.revise_model or args.model,
        temperature=args.temperature,
        answer_max_tokens=args.max_tokens,
        critique_max_tokens=args.max_tokens,
        revise_max_tokens=args.max_tokens,
    )
    return PersonaPipeline(
        PersonaRunOptions(
            personas_path=args.personas_file,
            prompts_path=args.prompts_file,
            n_personas=args.personas,
            prompts_per_persona=args.prompts_per_persona,
            seed=args.seed,
            graph=graph,
        )
    )
