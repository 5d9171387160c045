"""Read ACS PUMS person files (`csv_p*.zip`) into a compact column table of code strings.

Each Census Bureau zip holds one CSV (`psam_pNN.csv`, 286 columns) plus a README PDF. Rows
are streamed with the csv module; only the columns asked for are kept, as the zero-padded
strings found in the file (the empty string is a blank field). Every value is checked
against the data dictionary as it is read, so a code the dictionary does not list fails with
the data file and line. Repeated codes share one string object per column.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from operator import itemgetter
from pathlib import Path
from typing import Final

import structlog

from engine.persona.census.dictionary import DataDictionary
from engine.persona.census.errors import (
    InputNotFoundError,
    MalformedRowError,
    MissingColumnError,
    UnknownCodeError,
    ZipLayoutError,
)

#: Person-file columns the persona builder reads.
PERSON_COLUMNS: Final[tuple[str, ...]] = (
    "SERIALNO",
    "SPORDER",
    "RELP",
    "PWGTP",
    "ADJINC",
    "AGEP",
    "SEX",
    "RAC1P",
    "HISP",
    "ANC1P",
    "LANX",
    "LANP",
    "ENG",
    "SCHL",
    "SCH",
    "ESR",
    "COW",
    "INDP",
    "OCCP",
    "PINCP",
    "MAR",
    "POBP",
    "NATIVITY",
    "CIT",
    "MIL",
    "DIS",
    "HICOV",
    "DREM",
    "DEYE",
    "DEAR",
    "FER",
)

PERSON_ZIP_PATTERN: Final = "csv_p*.zip"
DICTIONARY_NAME: Final = "PUMS_Data_Dictionary_2018.csv"

log = structlog.get_logger()


class PersonTable:
    """Column-oriented person records: `columns[name][i]` is person i's code."""

    def __init__(self, columns: dict[str, list[str]], sources: tuple[Path, ...]) -> None:
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: {sorted(lengths)}")
        self.columns = columns
        self.sources = sources

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def column(self, name: str) -> list[str]:
        return self.columns[name]

    def row(self, index: int) -> dict[str, str]:
        return {name: values[index] for name, values in self.columns.items()}


def person_zips(census_dir: Path) -> list[Path]:
    """The person zips in `census_dir`, sorted by name; at least one must exist."""
    if not census_dir.is_dir():
        raise InputNotFoundError(census_dir, "census directory")
    paths = sorted(census_dir.glob(PERSON_ZIP_PATTERN))
    if not paths:
        raise InputNotFoundError(census_dir / PERSON_ZIP_PATTERN, "PUMS person zip files")
    return paths


def _csv_member(path: Path, archive: zipfile.ZipFile) -> str:
    members = tuple(name for name in archive.namelist() if name.lower().endswith(".csv"))
    if len(members) != 1:
        raise ZipLayoutError(path, members)
    return members[0]


class _ZipRows:
    """The picked values of one zip's CSV, with the line number of each row."""

    def __init__(self, location: str, lines: list[int], rows: list[tuple[str, ...]]) -> None:
        self.location = location
        self.lines = lines
        self.rows = rows


def _read_zip(path: Path, columns: tuple[str, ...]) -> _ZipRows:
    with zipfile.ZipFile(path) as archive:
        member = _csv_member(path, archive)
        location = f"{path}!{member}"
        with archive.open(member) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
            header = next(reader, [])
            positions = {name: i for i, name in enumerate(header)}
            for column in columns:
                if column not in positions:
                    raise MissingColumnError(location, column)
            indices = [positions[column] for column in columns]
            pick = itemgetter(*indices, indices[0])  # always a tuple; drop the extra item
            lines: list[int] = []
            rows: list[tuple[str, ...]] = []
            for row in reader:
                if len(row) != len(header):
                    raise MalformedRowError(location, reader.line_num, len(row), len(header))
                rows.append(pick(row)[:-1])
                lines.append(reader.line_num)
    return _ZipRows(location, lines, rows)


class _Columns:
    """Accumulates checked columns; equal codes share one string object per column."""

    def __init__(self, dictionary: DataDictionary, columns: tuple[str, ...]) -> None:
        self.dictionary = dictionary
        self.columns = columns
        self.variables = [dictionary.variable(column) for column in columns]
        self.known: list[dict[str, str]] = [{} for _ in columns]
        self.store: dict[str, list[str]] = {column: [] for column in columns}

    def add(self, part: _ZipRows) -> None:
        if not part.rows:
            return
        for position, values in enumerate(zip(*part.rows, strict=True)):
            known = self.known[position]
            self._check(position, set(values).difference(known), values, part)
            self.store[self.columns[position]].extend(map(known.__getitem__, values))

    def _check(
        self, position: int, codes: set[str], values: tuple[str, ...], part: _ZipRows
    ) -> None:
        variable, known = self.variables[position], self.known[position]
        unknown = [code for code in codes if variable.label(code) is None]
        if unknown:
            first = min(values.index(code) for code in unknown)
            raise UnknownCodeError(
                self.dictionary.path,
                variable.name,
                values[first],
                part.location,
                part.lines[first],
            )
        known.update((code, code) for code in codes)


def read_persons(
    paths: Iterable[Path],
    dictionary: DataDictionary,
    columns: tuple[str, ...] = PERSON_COLUMNS,
) -> PersonTable:
    """Read and check the given person zips, keeping only `columns`."""
    accumulator = _Columns(dictionary, columns)
    sources = tuple(paths)
    for path in sources:
        part = _read_zip(path, columns)
        accumulator.add(part)
        log.info("personas.read_zip", path=str(path), persons=len(part.rows))
    return PersonTable(accumulator.store, sources)
