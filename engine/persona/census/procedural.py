"""Procedural persona attributes, drawn from the lists in `engine.persona.census.lexicon`.

Choices (PERSONA.md section 6: the paper does not publish these):
- Who gets what (`MINIMUM_AGE`): Big Five from age 5 (younger children have temperament,
  not a measurable Big Five profile); quirks, mannerisms, personal time and lifestyle from
  age 3; ideology and political views from 18 (voting age: a 9-year-old has no political
  views); religion at every age (children share their household's). Within a list, each
  item has its own age range and may require facts from the census fields (employed,
  parent, retired, student, with a disability, religious), so a child never gets
  "after-work drinks with coworkers" and an unemployed person never a "work week".
- Big Five: five independent draws with shares 6.7/24.3/38/24.3/6.7 %.
- Quirks (2), mannerisms (2), personal time (3), lifestyle (1): weighted draws without
  repetition; an item tied to a Big Five pole is 3x likelier for people at that pole and a
  third as likely for people at the opposite pole.
- Religion by race/Hispanic-origin group and age; ideology by age; political views
  (party identification) given the ideology (lexicon.beliefs names the sources).
- Detailed job description: only for employed persons with an occupation; a procedural
  sentence from the industry, occupation and a typical duty of the occupation group, until
  the LLM enrichment stage replaces it.
Every draw comes from the one `random.Random` passed in, in a fixed order, so a persona's
procedural attributes depend only on that generator's seed and the census fields.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from engine.persona.census import codes
from engine.persona.census.households import FAMILY_TYPES, FPARC_NONE
from engine.persona.census.lexicon import Flag, Item, Pole, beliefs, jobs, pastimes, personality

MINIMUM_AGE: Final[Mapping[str, int]] = {
    "big five scores": 5,
    "defining quirks": 3,
    "mannerisms": 3,
    "personal time": 3,
    "lifestyle": 3,
    "ideology": 18,
    "political views": 18,
    "religion": 0,
}
PICKS: Final[Mapping[str, int]] = {
    "defining quirks": 2,
    "mannerisms": 2,
    "personal time": 3,
    "lifestyle": 1,
}
AFFINITY_BOOST: Final = 3.0
LIST_SEPARATOR: Final = "; "
PARENT_RELATIONS: Final = frozenset({codes.HOUSEHOLDER, codes.SPOUSE, codes.UNMARRIED_PARTNER})
RETIREMENT_AGE: Final = 55
_GROUP_PREFIX: Final = re.compile(r"^([A-Z]{3})-(.+)$")

T = TypeVar("T")


@dataclass(frozen=True)
class PersonContext:
    """The census facts the procedural attributes depend on."""

    age: int
    race_group: str
    flags: frozenset[Flag]
    occupation: str | None = None
    industry: str | None = None
    self_employed: bool = False


def race_group(hisp: str, rac1p: str) -> str:
    if hisp != codes.NOT_HISPANIC:
        return "hispanic"
    return {"1": "white", "2": "black", "6": "asian"}.get(rac1p, "other")


def census_flags(row: Mapping[str, str]) -> frozenset[Flag]:
    age = int(row["AGEP"])
    employed = row["ESR"] in codes.EMPLOYED
    fparc = row["FPARC"]
    flags = {
        Flag.EMPLOYED: employed,
        Flag.PARENT: row["RELP"] in PARENT_RELATIONS
        and row["HHT"] in FAMILY_TYPES
        and fparc not in ("", FPARC_NONE),
        Flag.RETIRED: row["ESR"] == codes.NOT_IN_LABOR_FORCE and age >= RETIREMENT_AGE,
        Flag.STUDENT: row["SCH"] in ("2", "3"),
        Flag.DISABLED: row["DIS"] == "1",
    }
    return frozenset(flag for flag, present in flags.items() if present)


def person_context(row: Mapping[str, str], attributes: Mapping[str, str]) -> PersonContext:
    """Context from a person's codes (`row`) and decoded census `attributes`."""
    flags = census_flags(row)
    employed = Flag.EMPLOYED in flags
    return PersonContext(
        age=int(row["AGEP"]),
        race_group=race_group(row["HISP"], row["RAC1P"]),
        flags=flags,
        occupation=attributes.get("occupation category") if employed else None,
        industry=attributes.get("industry category") if employed else None,
        self_employed=row["COW"] in codes.SELF_EMPLOYED,
    )


def _band(table: Sequence[tuple[int, T]], age: int) -> T:
    """The value of the last (lower bound, value) row whose bound is at most `age`."""
    chosen = table[0][1]
    for lower, value in table:
        if age >= lower:
            chosen = value
    return chosen


def _choose(rng: random.Random, options: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(options, weights=weights)[0]


def big_five(rng: random.Random) -> dict[str, str]:
    return {
        trait: _choose(rng, personality.LEVELS, personality.LEVEL_WEIGHTS)
        for trait in personality.TRAITS
    }


def format_big_five(levels: Mapping[str, str]) -> str:
    return ", ".join(f"{trait}: {levels[trait]}" for trait in personality.TRAITS)


def item_weight(entry: Item, levels: Mapping[str, str]) -> float:
    if entry.affinity is None or not levels:
        return 1.0
    trait, pole = entry.affinity
    level = levels[trait]
    same, opposite = (
        (personality.HIGH_LEVELS, personality.LOW_LEVELS)
        if pole is Pole.HIGH
        else (personality.LOW_LEVELS, personality.HIGH_LEVELS)
    )
    if level in same:
        return AFFINITY_BOOST
    return 1.0 / AFFINITY_BOOST if level in opposite else 1.0


def pick_items(
    rng: random.Random,
    entries: Sequence[Item],
    count: int,
    context: PersonContext,
    levels: Mapping[str, str],
) -> list[str]:
    """Up to `count` distinct items that fit the person, weighted by Big Five affinity."""
    pool = [entry for entry in entries if entry.fits(context.age, context.flags)]
    chosen: list[str] = []
    while pool and len(chosen) < count:
        weights = [item_weight(entry, levels) for entry in pool]
        index = rng.choices(range(len(pool)), weights=weights)[0]
        chosen.append(pool.pop(index).text)
    return chosen


def religion(rng: random.Random, context: PersonContext) -> str:
    base = beliefs.RELIGION_WEIGHTS[context.race_group]
    factor = _band(beliefs.UNAFFILIATED_FACTOR_BY_AGE, context.age)
    weights = [
        weight * (factor if name in beliefs.UNAFFILIATED else 1.0)
        for name, weight in zip(beliefs.RELIGIONS, base, strict=True)
    ]
    return _choose(rng, beliefs.RELIGIONS, weights)


def ideology(rng: random.Random, age: int) -> str:
    return _choose(rng, beliefs.IDEOLOGIES, _band(beliefs.IDEOLOGY_WEIGHTS_BY_AGE, age))


def political_views(rng: random.Random, chosen_ideology: str) -> str:
    table = beliefs.PARTY_BY_IDEOLOGY[chosen_ideology]
    return _choose(rng, list(table), list(table.values()))


def _plain(label: str) -> tuple[str | None, str]:
    """(group prefix or None, label in lower case without the prefix; acronyms kept)."""
    match = _GROUP_PREFIX.match(label)
    group, text = (match.group(1), match.group(2)) if match else (None, label)
    words = (word if len(word) > 1 and word.isupper() else word.lower() for word in text.split())
    return group, " ".join(words)


def job_description(rng: random.Random, context: PersonContext) -> str | None:
    """A one-sentence description of an employed person's job, or None."""
    if context.occupation is None:
        return None
    group, occupation = _plain(context.occupation)
    duties = jobs.DUTIES_BY_GROUP.get(group or "", jobs.GENERIC_DUTIES)
    duty = duties[rng.randrange(len(duties))]
    lead = "Self-employed, works" if context.self_employed else "Works"
    where = f" in {_plain(context.industry)[1]}" if context.industry else ""
    return f"{lead}{where} ({occupation}): {duty}."


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _applies(name: str, age: int) -> bool:
    return age >= MINIMUM_AGE[name]


def procedural_attributes(rng: random.Random, context: PersonContext) -> dict[str, str]:
    """The procedural attributes that apply to the person, drawn in a fixed order."""
    result: dict[str, str] = {}
    levels = big_five(rng) if _applies("big five scores", context.age) else {}
    if levels:
        result["big five scores"] = format_big_five(levels)
    faith = religion(rng, context)
    result["religion"] = faith
    if faith not in beliefs.UNAFFILIATED:
        context = dataclasses.replace(context, flags=context.flags | {Flag.RELIGIOUS})
    lists = {
        "defining quirks": personality.QUIRKS,
        "mannerisms": personality.MANNERISMS,
        "personal time": pastimes.PERSONAL_TIME,
        "lifestyle": pastimes.LIFESTYLES,
    }
    for name, entries in lists.items():
        if _applies(name, context.age):
            picked = pick_items(rng, entries, PICKS[name], context, levels)
            if picked:
                result[name] = _sentence_case(LIST_SEPARATOR.join(picked))
    if _applies("ideology", context.age):
        result["ideology"] = ideology(rng, context.age)
        result["political views"] = political_views(rng, result["ideology"])
    description = job_description(rng, context)
    if description is not None:
        result["detailed job description"] = description
    return result
