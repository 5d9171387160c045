"""From answers to labels: each rater's label, the majority per item (ties and "can't tell"
kept apart, never hidden), Fleiss' kappa among raters; and `study export`.

    python -m engine study export STUDY [--out STUDY/human.jsonl]

Written (each file whole, or not at all):
- OUT (`human.jsonl`): one line per item with a majority, in `agree`'s label format:
  `{"id", "label": "revision"|"original", "votes": {...}, "raters", "unanimous"}`; compare it
  with a model by `python -m engine agree human.jsonl RUN/verify/verify.labels.jsonl`.
- OUT's `.unresolved.jsonl`: the items answered with no majority, `{"id", "outcome": "tie" |
  "cant_tell", "votes"}` ("cant_tell": every rater of the item said they cannot tell).
- OUT's `.raters.jsonl`: every answer, `{"id", "label": "revision"|"original"|"cant_tell",
  "rater", "persona_id", "number", "preferred": "A"|"B"|null, "revision_position", "justification",
  "answered_at", "submits"}` (one line per rater and item: ids repeat, one per rater).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from engine.evaluation.stats import CONFIDENCE, N_RESAMPLES
from engine.study.store import Answer, Study

REVISION, ORIGINAL, CANT_TELL = "revision", "original", "cant_tell"
CATEGORIES = (ORIGINAL, REVISION, CANT_TELL)  # Fleiss' kappa counts "can't tell" as an answer
Outcome = Literal["majority", "tie", "cant_tell"]


class Votes(msgspec.Struct):
    revision: int = 0
    original: int = 0
    cant_tell: int = 0

    @property
    def total(self) -> int:
        return self.revision + self.original + self.cant_tell


class RaterLabel(msgspec.Struct, frozen=True):
    id: str
    label: str
    rater: str
    persona_id: str
    number: int  # the item's number in the rater's list (1-based)
    preferred: Literal["A", "B"] | None
    revision_position: str
    justification: str
    answered_at: str
    submits: int


class MajorityLabel(msgspec.Struct, frozen=True):
    id: str
    label: str
    votes: Votes
    raters: int
    unanimous: bool


class Unresolved(msgspec.Struct, frozen=True):
    id: str
    outcome: Outcome
    votes: Votes


class Tally(msgspec.Struct, frozen=True):
    raters: list[RaterLabel]
    majority: list[MajorityLabel]
    unresolved: list[Unresolved]
    unanswered: list[str]  # item ids no rater has answered yet
    votes: dict[str, Votes]  # item id -> votes, every answered item


class FleissKappa(msgspec.Struct, frozen=True):
    kappa: float
    low: float
    high: float
    items: int  # items with two answers or more (the others carry no agreement)
    answers: int


def rater_labels(study: Study, answers: Sequence[Answer]) -> list[RaterLabel]:
    persona_of = {seat.seat_id: seat.persona_id for seat in study.seats}
    labels = []
    for answer in answers:
        persona_id = persona_of[answer.seat_id]
        item = study.items[persona_id][answer.position]
        if answer.choice == "cant_tell":
            label, preferred = CANT_TELL, None
        else:
            preferred = answer.choice
            label = REVISION if answer.choice == item.revision_position else ORIGINAL
        labels.append(
            RaterLabel(
                item.id,
                label,
                answer.seat_id,
                persona_id,
                answer.position + 1,
                preferred,
                item.revision_position,
                answer.justification,
                answer.answered_at,
                answer.submits,
            )
        )
    return labels


def tally(study: Study, answers: Sequence[Answer]) -> Tally:
    raters = rater_labels(study, answers)
    votes: dict[str, Votes] = {}
    for rater in raters:
        counts = votes.setdefault(rater.id, Votes())
        setattr(counts, rater.label, getattr(counts, rater.label) + 1)
    majority: list[MajorityLabel] = []
    unresolved: list[Unresolved] = []
    unanswered: list[str] = []
    for items in study.items.values():
        for item in items:
            v = votes.get(item.id)
            if v is None:
                unanswered.append(item.id)
            elif v.revision != v.original:
                label = REVISION if v.revision > v.original else ORIGINAL
                unanimous = min(v.revision, v.original) == 0 and v.cant_tell == 0
                majority.append(MajorityLabel(item.id, label, v, v.total, unanimous))
            else:
                outcome: Outcome = "cant_tell" if v.revision == 0 else "tie"
                unresolved.append(Unresolved(item.id, outcome, v))
    return Tally(raters, majority, unresolved, unanswered, votes)


def fleiss(counts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Fleiss' kappa of item x category counts along the last two axes (leading axes are
    bootstrap resamples); items may have different numbers of raters (two at least).
    All answers in one category: kappa 1, where the formula is 0/0 (as stats.kappa)."""
    per_item = counts.sum(axis=-1)
    agreement = ((counts**2).sum(axis=-1) - per_item) / (per_item * (per_item - 1))
    observed = agreement.mean(axis=-1)
    shares = counts.sum(axis=-2) / per_item.sum(axis=-1, keepdims=True)
    expected = (shares**2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(expected < 1.0, (observed - expected) / (1.0 - expected), 1.0)
    return np.asarray(kappa, dtype=np.float64)


def fleiss_kappa(votes: Sequence[Votes], seed: int = 0) -> FleissKappa | None:
    """Fleiss' kappa over the items with two answers or more, with a percentile bootstrap
    interval over items (seeded); None when no item has two answers."""
    rows = [[v.original, v.revision, v.cant_tell] for v in votes if v.total >= 2]
    if not rows:
        return None
    counts = np.asarray(rows, dtype=np.float64)
    value = float(fleiss(counts))
    rng = np.random.default_rng(seed)
    resamples = counts[rng.integers(0, len(rows), size=(N_RESAMPLES, len(rows)))]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(fleiss(resamples), [tail, 100 - tail])
    return FleissKappa(value, float(low), float(high), len(rows), int(counts.sum()))


def _write_atomically(files: dict[Path, list[bytes]]) -> None:
    """Every file whole, or none touched: each is written beside itself, then renamed."""
    done: list[Path] = []
    try:
        for path, lines in files.items():
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line in lines))
            done.append(tmp)
        for path in files:
            os.replace(path.with_name(f".{path.name}.tmp"), path)
    finally:
        for tmp in done:
            tmp.unlink(missing_ok=True)


def export_paths(out: Path) -> tuple[Path, Path, Path]:
    """OUT, and beside it OUT's `.unresolved.jsonl` and `.raters.jsonl`."""
    stem = out.name.removesuffix(".jsonl")
    return out, out.with_name(f"{stem}.unresolved.jsonl"), out.with_name(f"{stem}.raters.jsonl")


def encode_lines(structs: Sequence[object]) -> list[bytes]:
    return [msgspec.json.encode(s) for s in structs]


def export(t: Tally, out: Path) -> tuple[Path, Path, Path]:
    paths = export_paths(out)
    parts: tuple[Sequence[object], ...] = (t.majority, t.unresolved, t.raters)
    _write_atomically(dict(zip(paths, map(encode_lines, parts), strict=True)))
    return paths


def summary(t: Tally) -> str:
    ties = sum(u.outcome == "tie" for u in t.unresolved)
    return (
        f"{len(t.raters)} answers; {len(t.majority)} items with a majority "
        f"({sum(m.unanimous for m in t.majority)} unanimous), {ties} ties, "
        f"{len(t.unresolved) - ties} can't tell, {len(t.unanswered)} not answered yet"
    )
