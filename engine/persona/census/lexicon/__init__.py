"""Word lists and distributions for the procedural persona attributes, written for this project.

PERSONA.md section 6: the paper did not publish its quirk/mannerism lists or distributions,
so these are our own. Each list item says who it may be given to (an age range and context
flags, see `Flag`) so that a 6-year-old does not get "after-work drinks with coworkers".
Weights are rough, rounded shares; where a public survey inspired them it is named next to
the table. They are illustrative, not estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MAX_AGE: Final = 120


class Flag(StrEnum):
    """Facts about a person, derived from census fields, that list items can require."""

    EMPLOYED = "employed"  # ESR: employed (civilian or armed forces)
    PARENT = "parent"  # householder, spouse or partner in a family with related children
    RETIRED = "retired"  # not in the labor force and 55 or older
    STUDENT = "student"  # SCH: enrolled in school or college
    DISABLED = "disabled"  # DIS: with a disability
    RELIGIOUS = "religious"  # the procedural religion is a faith (not unaffiliated)


class Pole(StrEnum):
    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True)
class Item:
    text: str
    min_age: int = 0
    max_age: int = MAX_AGE
    requires: frozenset[Flag] = frozenset()
    excludes: frozenset[Flag] = frozenset()
    #: (Big Five trait, pole): the item is likelier for people at that pole of the trait.
    affinity: tuple[str, Pole] | None = None

    def fits(self, age: int, flags: frozenset[Flag]) -> bool:
        return (
            self.min_age <= age <= self.max_age
            and self.requires <= flags
            and not (self.excludes & flags)
        )


def item(
    text: str,
    min_age: int = 0,
    max_age: int = MAX_AGE,
    *,
    needs: tuple[Flag, ...] = (),
    not_if: tuple[Flag, ...] = (),
    affinity: tuple[str, Pole] | None = None,
) -> Item:
    """Compact constructor for the tables."""
    return Item(text, min_age, max_age, frozenset(needs), frozenset(not_if), affinity)
