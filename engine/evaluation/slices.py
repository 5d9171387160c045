"""Intersectional slices: `--where 'sex=Female' --where 'age=18-29'` (clauses ANDed).

A clause is `attribute=value`: equal to the persona's value (case-insensitive), or for a
numeric attribute (age, income: "$53,694" reads 53694) a range `low-high`, both included.
An unknown attribute, a clause without `=` or a slice no sample falls in is a
`SettingsError` naming --where (exit 2, nothing enqueued).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import msgspec

from engine.errors import SettingsError
from schemas.persona import ATTRIBUTE_NAMES

_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*$")
_NUMBER = re.compile(r"^\$?-?[\d,]+(?:\.\d+)?$")


class Clause(msgspec.Struct, frozen=True):
    attribute: str
    value: str
    low: float | None = None
    high: float | None = None

    def matches(self, attributes: Mapping[str, str]) -> bool:
        actual = attributes.get(self.attribute)
        if actual is None:
            return False
        if self.low is not None and self.high is not None:
            number = as_number(actual)
            return number is not None and self.low <= number <= self.high
        return actual.strip().casefold() == self.value.strip().casefold()


def as_number(text: str) -> float | None:
    text = text.strip()
    return float(text.replace("$", "").replace(",", "")) if _NUMBER.match(text) else None


def parse_clause(text: str) -> Clause:
    attribute, sep, value = text.partition("=")
    attribute = attribute.strip()
    if not sep or not attribute or not value.strip():
        raise SettingsError(f"--where {text!r}: write attribute=value (or attribute=low-high)")
    if attribute not in ATTRIBUTE_NAMES:
        raise SettingsError(
            f"--where {text!r}: unknown attribute {attribute!r} "
            f"(known: {', '.join(ATTRIBUTE_NAMES)})"
        )
    bounds = _RANGE.match(value)
    if bounds:
        return Clause(attribute, value, float(bounds[1]), float(bounds[2]))
    return Clause(attribute, value)


def slice_name(clauses: Sequence[Clause]) -> str:
    return " and ".join(f"{c.attribute}={c.value}" for c in clauses)


def slices_of(clauses: Sequence[Clause]) -> list[tuple[Clause, ...]]:
    """Each clause alone, then (with more than one) all of them together."""
    alone = [(c,) for c in clauses]
    return alone + ([tuple(clauses)] if len(clauses) > 1 else [])


def check_not_empty(clauses: Sequence[Clause], attributes: Sequence[Mapping[str, str]]) -> None:
    for group in slices_of(clauses):
        if not any(all(c.matches(a) for c in group) for a in attributes):
            raise SettingsError(f"--where: no sample falls in the slice {slice_name(group)}")
