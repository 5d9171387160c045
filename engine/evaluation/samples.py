"""What a bench run evaluates: its settings and its (persona, question) samples.

Samples are drawn from the personas and the held-out prompts (the train/held-out split of
`engine.persona.prompt_select`, seeded by `split_seed`: the generation run's seed), distinct
pairs, seeded by `seed`; every mode answers the same samples, so modes compare pairwise.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import msgspec

from engine.errors import InputError, SettingsError
from engine.evaluation.templates import MODES, TEMPLATE_VERSION
from engine.persona.paths import DEFAULT_PERSONAS_PATH, DEFAULT_PROMPTS_PATH
from engine.persona.prompt_select import paper_split_sizes, split_prompts
from engine.persona.prompts import PromptFileError, load_prompts
from engine.persona.run import load_personas
from schemas.persona import ATTRIBUTE_NAMES
from schemas.prompt import Prompt


class EvalSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything that decides a bench run's requests (its signature), and how it was asked."""

    model: str = "sim-small"
    judge_model: str = "sim-small"
    modes: tuple[str, ...] = MODES
    n: int = 700
    k: int = 1
    seed: int = 0
    split_seed: int = 0
    answer_format: str = "marked"  # or "json" (response_format)
    temperature: float = 0.7
    max_tokens: int = 512
    judge_max_tokens: int = 512
    # how the judge is asked for JSON: json_schema, json_object or none (the prompt alone)
    judge_format: str = "json_schema"
    personas_path: str = str(DEFAULT_PERSONAS_PATH)
    prompts_path: str = str(DEFAULT_PROMPTS_PATH)
    template_version: str = TEMPLATE_VERSION
    # leave-one-out: for each attribute, a second judge of every answer without it
    loo: tuple[str, ...] = ()


class Sample(msgspec.Struct, frozen=True, gc=False):
    id: str
    persona_id: str
    persona: str  # the rendered persona text
    attributes: dict[str, str]
    prompt_id: str
    question: str


def signature(settings: EvalSettings) -> str:
    """Everything that decides the requests: the input files' bytes and the settings."""
    digest = hashlib.sha256()
    for name in (settings.personas_path, settings.prompts_path):
        try:
            digest.update(Path(name).read_bytes())
        except OSError as exc:
            raise InputError(Path(name), None, f"cannot read: {exc.strerror}") from None
    digest.update(
        msgspec.json.encode(msgspec.structs.replace(settings, personas_path="", prompts_path=""))
    )
    return digest.hexdigest()


def without_attribute(persona: str, attribute: str) -> str:
    """The rendered persona (one `name: value` line each) without `attribute`'s line."""
    prefix = f"{attribute}:"
    return "\n".join(line for line in persona.splitlines() if not line.startswith(prefix))


def check_attributes(names: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in ATTRIBUTE_NAMES]
    if unknown or not names:
        raise SettingsError(
            f"--attributes: unknown attribute(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(ATTRIBUTE_NAMES)})"
        )


def heldout_prompts(path: Path, split_seed: int) -> list[Prompt]:
    try:
        prompts = load_prompts(path)
    except PromptFileError as exc:
        raise InputError(exc.path, exc.line, str(exc)) from None
    split = split_prompts(prompts, *paper_split_sizes(len(prompts)), seed=split_seed)
    return list(split.heldout)


def draw_samples(settings: EvalSettings) -> list[Sample]:
    """`settings.n` distinct (persona, held-out question) pairs, in draw order."""
    personas = load_personas(Path(settings.personas_path))
    prompts = heldout_prompts(Path(settings.prompts_path), settings.split_seed)
    if not prompts:
        raise InputError(Path(settings.prompts_path), None, "no held-out prompts")
    if settings.n > len(personas) * len(prompts):
        raise SettingsError(
            f"--n {settings.n}: only {len(personas)} personas x {len(prompts)} held-out prompts"
        )
    rng = random.Random(f"evaluate:{settings.seed}")
    chosen: set[tuple[int, int]] = set()
    samples: list[Sample] = []
    while len(samples) < settings.n:
        pick = (rng.randrange(len(personas)), rng.randrange(len(prompts)))
        if pick in chosen:
            continue
        chosen.add(pick)
        persona, prompt = personas[pick[0]], prompts[pick[1]]
        samples.append(
            Sample(
                f"s{len(samples):04d}",
                persona.id,
                persona.text,
                dict(persona.attributes),
                prompt.id,
                prompt.text,
            )
        )
    return samples
