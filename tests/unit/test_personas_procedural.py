"""Procedural attributes: age rules, consistency with census facts, distributions."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from engine.persona.census.lexicon import MAX_AGE, Flag, Item, Pole, beliefs, pastimes, personality
from engine.persona.census.procedural import (
    MINIMUM_AGE,
    PICKS,
    PersonContext,
    big_five,
    item_weight,
    job_description,
    pick_items,
    procedural_attributes,
)

TEACHER = PersonContext(
    age=41,
    race_group="white",
    flags=frozenset({Flag.EMPLOYED, Flag.PARENT}),
    occupation="EDU-Elementary And Middle School Teachers",
    industry="EDU-Elementary And Secondary Schools",
)


def context(age: int, *flags: Flag, group: str = "white") -> PersonContext:
    return PersonContext(age=age, race_group=group, flags=frozenset(flags))


def test_a_nine_year_old_has_no_politics_but_a_religion_and_a_personality() -> None:
    for seed in range(50):
        attributes = procedural_attributes(random.Random(seed), context(9, Flag.STUDENT))
        assert "ideology" not in attributes
        assert "political views" not in attributes
        assert "detailed job description" not in attributes
        assert attributes["religion"] in beliefs.RELIGIONS
        assert {"big five scores", "defining quirks", "mannerisms", "personal time"} <= set(
            attributes
        )


def test_a_toddler_only_has_a_religion() -> None:
    attributes = procedural_attributes(random.Random(1), context(2))
    assert set(attributes) == {"religion"}


def test_adults_get_consistent_politics() -> None:
    for seed in range(200):
        attributes = procedural_attributes(random.Random(seed), context(18 + seed % 70))
        assert attributes["ideology"] in beliefs.IDEOLOGIES
        assert attributes["political views"] in beliefs.PARTY_BY_IDEOLOGY[attributes["ideology"]]


def test_big_five_is_formatted_in_trait_order() -> None:
    text = procedural_attributes(random.Random(3), TEACHER)["big five scores"]
    parts = [part.split(": ") for part in text.split(", ")]
    assert [trait for trait, _ in parts] == list(personality.TRAITS)
    assert all(level in personality.LEVELS for _, level in parts)


def test_big_five_levels_are_about_38_percent_average() -> None:
    rng = random.Random(0)
    counts = Counter(level for _ in range(4000) for level in big_five(rng).values())
    total = sum(counts.values())
    assert counts["Average"] / total == pytest.approx(0.38, abs=0.015)
    assert counts["Extremely High"] / total == pytest.approx(0.067, abs=0.01)


def test_job_description_only_for_employed_people_with_an_occupation() -> None:
    description = job_description(random.Random(0), TEACHER)
    assert description is not None
    assert description.startswith(
        "Works in elementary and secondary schools (elementary and middle school teachers): "
    )
    assert job_description(random.Random(0), context(41, Flag.EMPLOYED)) is None
    own = PersonContext(30, "white", frozenset({Flag.EMPLOYED}), "CON-Carpenters", None, True)
    assert job_description(random.Random(0), own) is not None
    assert str(job_description(random.Random(0), own)).startswith(
        "Self-employed, works (carpenters): "
    )


def test_same_generator_seed_gives_the_same_attributes() -> None:
    first = procedural_attributes(random.Random("0:17"), TEACHER)
    assert procedural_attributes(random.Random("0:17"), TEACHER) == first
    others = {str(procedural_attributes(random.Random(f"0:{i}"), TEACHER)) for i in range(20)}
    assert len(others) == 20


def test_personality_affinity_makes_items_likelier_at_their_pole() -> None:
    talkative = Item("talks with their hands", affinity=("Extraversion", Pole.HIGH))
    levels = {trait: "Average" for trait in personality.TRAITS}
    assert item_weight(talkative, levels) == 1.0
    assert item_weight(talkative, {**levels, "Extraversion": "Extremely High"}) == 3.0
    assert item_weight(talkative, {**levels, "Extraversion": "Low"}) == pytest.approx(1 / 3)


FLAG_SETS = [
    frozenset(combo)
    for size in range(len(Flag) + 1)
    for combo in itertools.combinations(Flag, size)
]
LISTS = {
    "defining quirks": personality.QUIRKS,
    "mannerisms": personality.MANNERISMS,
    "personal time": pastimes.PERSONAL_TIME,
}


@pytest.mark.parametrize("name", sorted(LISTS))
def test_every_age_has_enough_items_that_fit(name: str) -> None:
    entries = LISTS[name]
    for age in range(MINIMUM_AGE[name], 100):
        for flags in FLAG_SETS:
            fitting = [entry for entry in entries if entry.fits(age, flags)]
            assert len(fitting) >= PICKS[name] * 3, (name, age, sorted(flags))


def test_every_person_gets_a_lifestyle_that_fits() -> None:
    for age in range(MINIMUM_AGE["lifestyle"], 100):
        for flags in FLAG_SETS:
            fitting = [e for e in pastimes.LIFESTYLES if e.fits(age, flags)]
            assert fitting, (age, sorted(flags))


def test_picked_items_fit_age_and_circumstances() -> None:
    texts = {entry.text: entry for entry in pastimes.PERSONAL_TIME}
    rng = random.Random(5)
    for age in (4, 9, 15, 30, 70):
        person = context(age)
        for _ in range(30):
            for text in pick_items(rng, pastimes.PERSONAL_TIME, 3, person, {}):
                entry = texts[text]
                assert entry.min_age <= age <= entry.max_age
                assert not entry.requires, f"{text!r} requires {entry.requires} at {age}"
    child = pick_items(random.Random(0), pastimes.PERSONAL_TIME, 100, context(7), {})
    assert "after-work drinks with coworkers" not in child
    assert len(child) == len(set(child))


def test_lexicon_tables_are_well_formed() -> None:
    for _, weights in beliefs.IDEOLOGY_WEIGHTS_BY_AGE:
        assert len(weights) == len(beliefs.IDEOLOGIES)
        assert sum(weights) == pytest.approx(1.0)
    assert set(beliefs.PARTY_BY_IDEOLOGY) == set(beliefs.IDEOLOGIES)
    for weights in beliefs.RELIGION_WEIGHTS.values():
        assert len(weights) == len(beliefs.RELIGIONS)
    assert sum(personality.LEVEL_WEIGHTS) == pytest.approx(1.0)
    for entry in (*personality.QUIRKS, *personality.MANNERISMS, *pastimes.PERSONAL_TIME):
        assert 0 <= entry.min_age <= entry.max_age <= MAX_AGE
        assert entry.affinity is None or entry.affinity[0] in personality.TRAITS


def test_religion_follows_the_race_and_origin_group() -> None:
    rng = random.Random(11)
    hispanic = Counter(
        procedural_attributes(rng, context(40, group="hispanic"))["religion"] for _ in range(400)
    )
    black = Counter(
        procedural_attributes(rng, context(40, group="black"))["religion"] for _ in range(400)
    )
    assert hispanic.most_common(1)[0][0] == beliefs.CATHOLIC
    assert black.most_common(1)[0][0] == beliefs.BLACK_PROTESTANT
