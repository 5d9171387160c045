"""Which prompts each persona answers: the paper's 100 train + 50 test-seen + 50 test-unseen.

Drawn independently of the persona's attributes (PERSONA.md section 3: on purpose), but
deterministically from (seed, persona id), so a persona's draw does not change when the
number of personas does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import msgspec

SPLITS = ("train", "test_seen", "test_unseen")


class Pair(msgspec.Struct, frozen=True, gc=False):
    persona_id: str
    prompt_id: str
    split: str


class SamplingError(ValueError):
    pass


def per_persona_counts(k: int) -> tuple[int, int, int]:
    """(train, test_seen, test_unseen) for k prompts a persona: 100/50/50 of 200, scaled."""
    if k < 1:
        raise SamplingError(f"prompts per persona must be at least 1, got {k}")
    train = int(k * 0.5 + 0.5)  # rounded half up
    seen = int(k * 0.25 + 0.5)
    return train, seen, k - train - seen


def draw_pairs(
    persona_ids: Sequence[str],
    train_prompts: Sequence[str],
    heldout_prompts: Sequence[str],
    k: int,
    seed: int,
) -> Iterator[Pair]:
    n_train, n_seen, n_unseen = per_persona_counts(k)
    if n_train + n_seen > len(train_prompts) or n_unseen > len(heldout_prompts):
        raise SamplingError(
            f"{k} prompts per persona need {n_train + n_seen} train and {n_unseen} held-out "
            f"prompts; the prompt set has {len(train_prompts)} and {len(heldout_prompts)}"
        )
    for persona_id in persona_ids:
        rng = random.Random(f"{seed}:{persona_id}")
        seen_pool = rng.sample(train_prompts, n_train + n_seen)
        for index, prompt_id in enumerate(seen_pool):
            yield Pair(persona_id, prompt_id, "train" if index < n_train else "test_seen")
        for prompt_id in rng.sample(heldout_prompts, n_unseen):
            yield Pair(persona_id, prompt_id, "test_unseen")
