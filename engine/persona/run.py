"""What a PERSONA run is made of: its options, its inputs, its plan and its signature.

    inputs (personas, prompts) → split prompts (train / held-out) → draw pairs per persona
    → the job graph (engine.persona.graph), enqueued by engine.persona.pipeline

The run directory remembers a signature of everything that decides the requests. The same
command resumes; different settings on the same run directory are refused (use a new
--run-dir: the shared cache serves every request that did not change).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from engine.errors import InputError, SettingsError
from engine.persona import templates
from engine.persona.graph import GraphConfig
from engine.persona.paths import DEFAULT_PERSONAS_PATH, DEFAULT_PROMPTS_PATH
from engine.persona.prompt_select import paper_split_sizes, split_prompts
from engine.persona.prompts import PromptFileError, load_prompts
from engine.persona.sampling import Pair, SamplingError, draw_pairs
from schemas.persona import Persona, persona_decoder
from schemas.prompt import Prompt


class PersonaRunOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    personas_path: Path = DEFAULT_PERSONAS_PATH
    prompts_path: Path = DEFAULT_PROMPTS_PATH
    n_personas: int | None = None  # None: every persona in the file
    prompts_per_persona: int = 200
    seed: int = 0
    graph: GraphConfig = GraphConfig()


class SettingsChanged(SettingsError):
    """The run directory was started with other settings."""


def load_personas(path: Path) -> list[Persona]:
    """A persona JSONL file; errors name the file and line."""
    personas: list[Persona] = []
    seen: dict[str, int] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                persona = persona_decoder.decode(raw)
            except msgspec.DecodeError as exc:
                raise InputError(path, number, f"not a persona: {exc}") from None
            if not persona.id or ":" in persona.id:
                raise InputError(path, number, f"bad persona id {persona.id!r}")
            if persona.id in seen:
                raise InputError(
                    path, number, f"duplicate id {persona.id!r} (line {seen[persona.id]})"
                )
            seen[persona.id] = number
            personas.append(persona)
    if not personas:
        raise InputError(path, None, "no personas")
    return personas


def signature(options: PersonaRunOptions) -> str:
    """Everything that decides the requests: input bytes, sizes, seed, models, templates."""
    digest = hashlib.sha256()
    for path in (options.personas_path, options.prompts_path):
        digest.update(path.read_bytes())
    settings = (options.n_personas, options.prompts_per_persona, options.seed)
    digest.update(msgspec.json.encode([settings, options.graph]))
    for text in (templates.ANSWER_SYSTEM, templates.CRITIQUE_USER, templates.REVISE_USER):
        digest.update(text.encode())
    return digest.hexdigest()


def plan(options: PersonaRunOptions) -> tuple[list[Persona], list[Prompt], list[Pair]]:
    """The personas, prompts and pairs of this run (pure given the files)."""
    personas = load_personas(options.personas_path)
    if options.n_personas is not None:
        if options.n_personas > len(personas):
            raise InputError(
                options.personas_path,
                None,
                f"--personas {options.n_personas}: the file has only {len(personas)}",
            )
        personas = personas[: options.n_personas]
    try:
        prompts = load_prompts(options.prompts_path)
    except PromptFileError as exc:
        raise InputError(exc.path, exc.line, str(exc)) from None
    split = split_prompts(prompts, *paper_split_sizes(len(prompts)), seed=options.seed)
    try:
        pairs = list(
            draw_pairs(
                [p.id for p in personas],
                [q.id for q in split.train],
                [q.id for q in split.heldout],
                options.prompts_per_persona,
                options.seed,
            )
        )
    except SamplingError as exc:
        raise InputError(options.prompts_path, None, str(exc)) from None
    used = {pair.prompt_id for pair in pairs}
    return personas, [q for q in prompts if q.id in used], pairs
