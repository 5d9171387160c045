"""Choosing prompts: the paper's rule filters, text deduplication, and the train/held-out split.

All pure: prompts in, prompts out, no I/O.

Filters (PERSONA.md section 2): keep a prompt if its text contains a `?` and has at least five
words. Each dropped prompt is counted under the first rule it fails, in `RULES` order, so the
counts add up to the number dropped.

Split: `split_prompts` picks `n_train + n_heldout` prompts, stratified by topic, in two steps,
each a largest-remainder apportionment (ties go to the topic whose name sorts first):
  1. each topic contributes `size * selected / available` prompts, within one item;
  2. each topic's contribution is split so its train share is
     `contribution * n_train / selected`, within one item.
Within a topic, prompts are ranked by a hash of (seed, id), so the split depends only on the
seed and the set of prompts, never on their order or on Python's hash randomisation.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import msgspec

from schemas.prompt import Prompt

#: The paper's prompt counts (PERSONA.md section 2); our split keeps their proportion.
PAPER_N_TRAIN: Final = 3000
PAPER_N_HELDOUT: Final = 868
MIN_WORDS: Final = 5


class DropReason(enum.StrEnum):
    NO_QUESTION_MARK = "no_question_mark"
    TOO_FEW_WORDS = "too_few_words"
    DUPLICATE_TEXT = "duplicate_text"


class FilterResult(msgspec.Struct, frozen=True, gc=False):
    kept: tuple[Prompt, ...]
    dropped: dict[DropReason, int]


class PromptSplit(msgspec.Struct, frozen=True, gc=False):
    """Both parts in the order the prompts were given."""

    train: tuple[Prompt, ...]
    heldout: tuple[Prompt, ...]


class SplitSizeError(ValueError):
    """The requested split sizes are negative or need more prompts than there are."""

    def __init__(self, n_train: int, n_heldout: int, n_available: int) -> None:
        super().__init__(
            f"cannot split {n_available} prompts into {n_train} train + {n_heldout} held-out"
        )
        self.n_train = n_train
        self.n_heldout = n_heldout
        self.n_available = n_available


class DuplicatePromptIdError(ValueError):
    """Two prompts given to the split share an id, so the split would not be well defined."""

    def __init__(self, prompt_id: str) -> None:
        super().__init__(f"prompt id {prompt_id!r} appears more than once")
        self.prompt_id = prompt_id


def normalise_text(text: str) -> str:
    """The form two texts are compared in: lower case, runs of whitespace as one space."""
    return " ".join(text.lower().split())


def has_question_mark(text: str) -> bool:
    return "?" in text


def word_count(text: str) -> int:
    return len(text.split())


def has_min_words(text: str, min_words: int = MIN_WORDS) -> bool:
    return word_count(text) >= min_words


#: The paper's rules in the order they are checked.
RULES: Final[tuple[tuple[DropReason, Callable[[str], bool]], ...]] = (
    (DropReason.NO_QUESTION_MARK, has_question_mark),
    (DropReason.TOO_FEW_WORDS, has_min_words),
)


def rule_failure(text: str) -> DropReason | None:
    """The first rule `text` fails, or None if it passes them all."""
    for reason, passes in RULES:
        if not passes(text):
            return reason
    return None


def apply_rule_filters(prompts: Iterable[Prompt]) -> FilterResult:
    """Keep the prompts that pass every rule; count the others by the first rule they fail."""
    kept: list[Prompt] = []
    dropped = {reason: 0 for reason, _ in RULES}
    for prompt in prompts:
        reason = rule_failure(prompt.text)
        if reason is None:
            kept.append(prompt)
        else:
            dropped[reason] += 1
    return FilterResult(kept=tuple(kept), dropped=dropped)


def drop_duplicate_texts(prompts: Iterable[Prompt]) -> FilterResult:
    """Keep the first prompt of each normalised text (PRISM repeats some opening prompts)."""
    kept: list[Prompt] = []
    seen: set[str] = set()
    duplicates = 0
    for prompt in prompts:
        key = normalise_text(prompt.text)
        if key in seen:
            duplicates += 1
        else:
            seen.add(key)
            kept.append(prompt)
    return FilterResult(kept=tuple(kept), dropped={DropReason.DUPLICATE_TEXT: duplicates})


def paper_split_sizes(n_available: int) -> tuple[int, int]:
    """(n_train, n_heldout) using every available prompt, in the paper's 3000:868 proportion."""
    total = PAPER_N_TRAIN + PAPER_N_HELDOUT
    n_train = (2 * n_available * PAPER_N_TRAIN + total) // (2 * total)  # rounded half up
    return n_train, n_available - n_train


def apportion(total: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """Split `total` over the keys in proportion to `sizes` (largest remainder method).

    Each share is the floor or the ceiling of its exact quota `total * size / sum(sizes)`,
    and the shares add up to `total`. Ties on the remainder go to the key that sorts first.
    """
    weight = sum(sizes.values())
    if weight == 0:
        return dict.fromkeys(sizes, 0)
    shares = {key: total * size // weight for key, size in sizes.items()}
    by_remainder = sorted(sizes, key=lambda key: (-(total * sizes[key] % weight), key))
    for key in by_remainder[: total - sum(shares.values())]:
        shares[key] += 1
    return shares


def rank_key(seed: int, prompt_id: str) -> bytes:
    """A prompt's place in its topic's shuffled order: stable across runs and platforms."""
    return hashlib.blake2b(f"{seed}\x00{prompt_id}".encode(), digest_size=16).digest()


def split_prompts(
    prompts: Sequence[Prompt], n_train: int, n_heldout: int, seed: int
) -> PromptSplit:
    """A deterministic, topic-stratified, disjoint train/held-out split (see module doc)."""
    selected = n_train + n_heldout
    if n_train < 0 or n_heldout < 0 or selected > len(prompts):
        raise SplitSizeError(n_train, n_heldout, len(prompts))
    by_topic = _group_by_topic(prompts)
    sizes = {topic: len(members) for topic, members in by_topic.items()}
    contributions = apportion(selected, sizes)
    train_counts = apportion(n_train, contributions)
    train_ids: set[str] = set()
    heldout_ids: set[str] = set()
    for topic, members in by_topic.items():
        ranked = sorted(members, key=lambda prompt: rank_key(seed, prompt.id))
        chosen = [prompt.id for prompt in ranked[: contributions[topic]]]
        train_ids.update(chosen[: train_counts[topic]])
        heldout_ids.update(chosen[train_counts[topic] :])
    return PromptSplit(
        train=tuple(p for p in prompts if p.id in train_ids),
        heldout=tuple(p for p in prompts if p.id in heldout_ids),
    )


def _group_by_topic(prompts: Sequence[Prompt]) -> dict[str, list[Prompt]]:
    groups: dict[str, list[Prompt]] = {}
    ids: set[str] = set()
    for prompt in prompts:
        if prompt.id in ids:
            raise DuplicatePromptIdError(prompt.id)
        ids.add(prompt.id)
        groups.setdefault(prompt.topic, []).append(prompt)
    return groups
