"""ACS national Data Profiles (data.census.gov CSV exports, e.g. ACSDP1Y2022.DP05.csv).

Layout: a header row, then one row per line of the profile:

    "Label (Grouping)","United States!!Estimate","...!!Margin of Error","...!!Percent",...
    "SEX AND AGE","","","",""
    "    Total population","333,287,562",...
    "        Male","165,228,214",...

Labels are indented with non-breaking spaces, four per level; unindented rows are section
headings. A row is found by its label path from the section heading down (labels repeat:
"Male" appears under "Total population" and under "18 years and over"), first match wins.
Numbers carry thousands separators.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import msgspec

from engine.persona.census.errors import InputNotFoundError, NationalTableError

INDENT_UNIT = 4
ESTIMATE_COLUMN = 1


class ProfileRow(msgspec.Struct, frozen=True):
    label_path: tuple[str, ...]
    estimate: str
    line: int


class ProfileTable:
    def __init__(self, path: Path, rows: tuple[ProfileRow, ...]) -> None:
        self.path = path
        self.rows = rows

    def estimate(self, label_path: Sequence[str]) -> float:
        """The estimate of the first row whose label path is `label_path`."""
        wanted = tuple(label_path)
        for row in self.rows:
            if row.label_path == wanted:
                try:
                    return float(row.estimate.replace(",", ""))
                except ValueError:
                    raise NationalTableError(
                        self.path, wanted, f"line {row.line}: estimate {row.estimate!r}"
                    ) from None
        raise NationalTableError(self.path, wanted, "not found")


def _depth(label: str) -> int:
    stripped = label.lstrip("\xa0 ")
    return (len(label) - len(stripped)) // INDENT_UNIT


def read_profile(path: Path) -> ProfileTable:
    """Parse a Data Profile CSV into rows keyed by their label path."""
    if not path.is_file():
        raise InputNotFoundError(path, "ACS national Data Profile")
    rows: list[ProfileRow] = []
    stack: list[str] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if not row or not row[0].strip():
                continue
            depth = _depth(row[0])
            del stack[depth:]
            stack.append(row[0].strip("\xa0 "))
            estimate = row[ESTIMATE_COLUMN] if len(row) > ESTIMATE_COLUMN else ""
            rows.append(ProfileRow(tuple(stack), estimate, reader.line_num))
    return ProfileTable(path, tuple(rows))
