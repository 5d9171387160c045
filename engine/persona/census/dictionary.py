"""The official PUMS data dictionary CSV: variable names, and code → label (`VAL` rows).

Layout (no header row), one record per line:

    NAME,<var>,<C|N>,<width>,"<description>"
    VAL,<var>,<C|N>,<width>,"<low>","<high>","<label>"

A `VAL` row whose low and high differ is a range (`VAL,AGEP,N,2,1,99,"1 to 99 years"`).
A blank field in the data is written as a run of `b` in the dictionary (`"bbbb"`), so the
empty string is stored as the code for those rows. The dictionary lists housing variables
first and person variables after; `RT`, `SERIALNO` and `ADJINC` appear in both parts, and a
repeated variable's `VAL` rows are merged into its first definition.
"""

from __future__ import annotations

import csv
from pathlib import Path

import msgspec

from engine.persona.census.errors import InputNotFoundError, MissingVariableError, UnknownCodeError

#: Labels of "does not apply" codes start with this (e.g. "N/A (less than 16 years old)").
NOT_APPLICABLE_PREFIX = "N/A"


def _as_int(text: str) -> int | None:
    """The integer written in `text` (optional sign, digits only), else None."""
    digits = text[1:] if text[:1] in "+-" else text
    return int(text) if digits.isdigit() and digits.isascii() else None


class ValueRange(msgspec.Struct, frozen=True):
    """Inclusive range of codes. Numbers compare as numbers; other codes (serial numbers)
    as strings of the same width."""

    low: str
    high: str
    label: str

    def __contains__(self, code: str) -> bool:
        low_n, high_n = _as_int(self.low), _as_int(self.high)
        if low_n is not None and high_n is not None:
            code_n = _as_int(code)
            return code_n is not None and low_n <= code_n <= high_n
        return len(code) == len(self.low) == len(self.high) and self.low <= code <= self.high


class Variable(msgspec.Struct, frozen=True):
    name: str
    kind: str
    width: int
    description: str
    line: int
    labels: dict[str, str]
    ranges: tuple[ValueRange, ...] = ()

    def label(self, code: str) -> str | None:
        """The label of `code` (the empty string is a blank field), or None if unlisted."""
        exact = self.labels.get(code)
        if exact is not None:
            return exact
        for value_range in self.ranges:
            if code in value_range:
                return value_range.label
        return None


def _normalise_code(raw: str) -> str:
    """`b`, `bb`, `bbbb`... stand for a blank field."""
    return "" if raw and set(raw) == {"b"} else raw


class DataDictionary:
    """Lookups into one dictionary file; errors name that file."""

    def __init__(self, path: Path, variables: dict[str, Variable]) -> None:
        self.path = path
        self.variables = variables

    def variable(self, name: str) -> Variable:
        found = self.variables.get(name)
        if found is None:
            raise MissingVariableError(self.path, name)
        return found

    def label(self, name: str, code: str) -> str:
        """The label of `code` for variable `name`; raises if either is not listed."""
        label = self.variable(name).label(code)
        if label is None:
            raise UnknownCodeError(self.path, name, code)
        return label


class _Builder:
    def __init__(self) -> None:
        self.heads: dict[str, tuple[str, int, str, int]] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.ranges: dict[str, list[ValueRange]] = {}

    def add_name(self, row: list[str], line: int) -> None:
        name = row[1]
        if name not in self.heads:
            width = int(row[3]) if row[3].isdigit() else 0
            self.heads[name] = (row[2], width, row[4], line)
            self.labels[name] = {}
            self.ranges[name] = []

    def add_value(self, row: list[str], line: int) -> None:
        """A VAL row before its NAME row defines the variable with an empty description."""
        name, low, high, label = row[1], _normalise_code(row[4]), _normalise_code(row[5]), row[6]
        self.add_name([*row[:4], ""], line)
        if low == high:
            self.labels[name].setdefault(low, label)
        elif ValueRange(low, high, label) not in self.ranges[name]:
            self.ranges[name].append(ValueRange(low, high, label))

    def build(self) -> dict[str, Variable]:
        return {
            name: Variable(
                name=name,
                kind=kind,
                width=width,
                description=description,
                line=line,
                labels=self.labels[name],
                ranges=tuple(self.ranges[name]),
            )
            for name, (kind, width, description, line) in self.heads.items()
        }


def read_dictionary(path: Path) -> DataDictionary:
    """Parse the dictionary CSV; rows other than NAME (5 fields) and VAL (7 fields) are skipped."""
    if not path.is_file():
        raise InputNotFoundError(path, "PUMS data dictionary")
    builder = _Builder()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if len(row) == 5 and row[0] == "NAME":
                builder.add_name(row, line)
            elif len(row) == 7 and row[0] == "VAL":
                builder.add_value(row, line)
    return DataDictionary(path, builder.build())
