"""`study create`: the items, seats and links of a study, drawn from a finished PERSONA run.

    python -m engine study create --run-dir runs/persona --personas 20 --questions 10 \
        --raters-per-persona 4 --out study/ [--seed 0] [--base-url http://127.0.0.1:8080]

Items are `verify`'s (`engine.evaluation.verify.Item`, id `persona_id:prompt_id`, the original
and the revision shown as A and B in an order drawn per item and recorded), so the raters'
majority and a judge's `verify.labels.jsonl` are matched by `agree`. Each persona gets
`--raters-per-persona` seats; a seat is one rater's link, with its own unguessable token.

The folder is built beside `--out` and renamed into place: a failed create leaves nothing.
Written: study.sqlite (design; answers later), instructions.md (the text raters read first,
editable until the first answer), links.csv (one rater link a seat), organiser.txt.
"""

from __future__ import annotations

import csv
import os
import random
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import msgspec

from engine.errors import SettingsError
from engine.evaluation.verify import Item, SourcePair, read_pairs
from engine.study import store

INSTRUCTIONS_FILE = "instructions.md"
LINKS_FILE = "links.csv"
ORGANISER_FILE = "organiser.txt"
TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters

DEFAULT_INSTRUCTIONS = """\
You will read the description of a person. For each question that follows, imagine that you \
are this person: their age, their work, their beliefs, their habits and circumstances.

Each question comes with two answers, A and B. Choose the answer this person would prefer, \
not the one you prefer yourself.

Justify your choice in one sentence: what about this person makes them prefer it?

If you honestly cannot tell which answer they would prefer, choose "Can't tell", and still \
say why in one sentence.

Do not use chatbots or other AI tools: this study measures what people judge.

You can close the page and come back to your link at any time. Each answer is saved when you \
submit it, and you can change it later.
"""


class Created(msgspec.Struct, frozen=True):
    folder: Path
    seats: int
    items: int
    organiser_url: str


def draw_items(
    pairs: list[SourcePair], personas: int, questions: int, seed: int
) -> dict[str, list[Item]]:
    """`personas` personas that have at least `questions` pairs, and `questions` of their
    pairs each, as items with the A/B order drawn per item (seeded: the same draw again)."""
    by_persona: dict[str, dict[str, SourcePair]] = {}
    for pair in pairs:
        by_persona.setdefault(pair.persona_id, {}).setdefault(pair.prompt_id, pair)
    eligible = [p for p, prompts in by_persona.items() if len(prompts) >= questions]
    if len(eligible) < personas:
        raise SettingsError(
            f"--personas {personas} --questions {questions}: the run has only "
            f"{len(eligible)} personas with {questions} pairs or more"
        )
    rng = random.Random(f"study:{seed}")
    drawn: dict[str, list[Item]] = {}
    for persona_id in rng.sample(eligible, personas):
        items = drawn[persona_id] = []
        for pair in rng.sample(list(by_persona[persona_id].values()), questions):
            revision_first = rng.random() < 0.5
            a, b = (pair.chosen, pair.rejected) if revision_first else (pair.rejected, pair.chosen)
            item_id = f"{pair.persona_id}:{pair.prompt_id}"
            position: Literal["A", "B"] = "A" if revision_first else "B"
            items.append(Item(item_id, pair.persona, pair.prompt, position, a, b))
    return drawn


def make_seats(persona_ids: list[str], raters_per_persona: int) -> list[store.Seat]:
    """`raters_per_persona` seats per persona, each with a token of its own."""
    seats: list[store.Seat] = []
    for persona_id in persona_ids:
        for _ in range(raters_per_persona):
            seat_id = f"r{len(seats) + 1:03d}"
            seats.append(store.Seat(seat_id, persona_id, secrets.token_urlsafe(TOKEN_BYTES)))
    return seats


def rater_path(token: str) -> str:
    return f"/r/{token}"


def organiser_path(token: str) -> str:
    return f"/o/{token}"


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "holds a study" if (out / store.DB_NAME).exists() else "is not an empty folder"
        raise SettingsError(f"--out {out}: {what}; choose a new folder")


def create(
    run_dir: Path,
    out: Path,
    *,
    personas: int,
    questions: int,
    raters_per_persona: int,
    seed: int,
    base_url: str,
) -> Created:
    _check_out(out)
    pairs, digest = read_pairs(run_dir)
    items = draw_items(pairs, personas, questions, seed)
    seats = make_seats(list(items), raters_per_persona)
    settings = store.Settings(
        source=str(run_dir),
        pairs_digest=digest,
        seed=seed,
        personas=personas,
        questions=questions,
        raters_per_persona=raters_per_persona,
        created_at=store.now(),
    )
    study = store.Study(settings, secrets.token_urlsafe(TOKEN_BYTES), seats, items)
    base = base_url.rstrip("/")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        store.write_new(building, study)
        (building / INSTRUCTIONS_FILE).write_text(DEFAULT_INSTRUCTIONS)
        with (building / LINKS_FILE).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seat", "persona_id", "path", "url"])
            for seat in seats:
                path = rater_path(seat.token)
                writer.writerow([seat.seat_id, seat.persona_id, path, base + path])
        organiser_url = base + organiser_path(study.organiser_token)
        (building / ORGANISER_FILE).write_text(organiser_url + "\n")
        for name in (LINKS_FILE, ORGANISER_FILE, store.DB_NAME):
            os.chmod(building / name, 0o600)  # the links are the study's keys
        if out.exists():
            out.rmdir()  # empty, checked above
        building.rename(out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    total = sum(len(v) for v in items.values())
    return Created(out, len(seats), total, organiser_url)
