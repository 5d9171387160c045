"""Errors raised while building personas from census files; each carries its data.

    PersonaDataError                  any problem with the input files or the fit
    ├── InputNotFoundError            a directory or file that should be there is not
    ├── ZipLayoutError                a PUMS zip without exactly one CSV member
    ├── MissingColumnError            a PUMS CSV header lacks a column we need
    ├── MalformedRowError             a PUMS row with the wrong number of fields
    ├── DictionaryError
    │   ├── MissingVariableError      the data dictionary has no NAME row for a variable
    │   └── UnknownCodeError          a code in the data that the dictionary does not list
    ├── NationalTableError            a national Data Profile lacks a row or has a bad number
    ├── SampleSizeError               more personas asked for than persons with weight
    └── RakingError
        ├── RakingInfeasibleError     a margin asks for weight where no person can carry it
        └── RakingNotConvergedError   iterative proportional fitting did not converge

Callers decide by class; the message is for people.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import UserError


class PersonaDataError(UserError):
    """Base class: the inputs cannot be turned into personas."""


class InputNotFoundError(PersonaDataError):
    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{what} not found: {path}")
        self.path = path
        self.what = what


class ZipLayoutError(PersonaDataError):
    def __init__(self, path: Path, members: tuple[str, ...]) -> None:
        super().__init__(f"{path}: expected exactly one .csv member, found {list(members)}")
        self.path = path
        self.members = members


class MissingColumnError(PersonaDataError):
    def __init__(self, path: str, column: str) -> None:
        super().__init__(f"{path}: line 1 (header) has no column {column!r}")
        self.path = path
        self.column = column


class MalformedRowError(PersonaDataError):
    def __init__(self, path: str, line: int, fields: int, expected: int) -> None:
        super().__init__(f"{path}: line {line} has {fields} fields, the header has {expected}")
        self.path = path
        self.line = line
        self.fields = fields
        self.expected = expected


class DictionaryError(PersonaDataError):
    """The data dictionary does not describe what the data holds."""


class MissingVariableError(DictionaryError):
    def __init__(self, dictionary_path: Path, variable: str) -> None:
        super().__init__(f"{dictionary_path}: no NAME row for variable {variable!r}")
        self.dictionary_path = dictionary_path
        self.variable = variable


class UnknownCodeError(DictionaryError):
    """`data_path`/`line` say where the code was seen, when it came from a data file."""

    def __init__(
        self,
        dictionary_path: Path,
        variable: str,
        code: str,
        data_path: str | None = None,
        line: int | None = None,
    ) -> None:
        where = f"{data_path}: line {line}: " if data_path is not None else ""
        super().__init__(
            f"{where}{variable}={code!r} is not listed in the data dictionary {dictionary_path}"
        )
        self.dictionary_path = dictionary_path
        self.variable = variable
        self.code = code
        self.data_path = data_path
        self.line = line


class NationalTableError(PersonaDataError):
    def __init__(self, path: Path, label_path: tuple[str, ...], reason: str) -> None:
        super().__init__(f"{path}: row {' > '.join(label_path)}: {reason}")
        self.path = path
        self.label_path = label_path
        self.reason = reason


class SampleSizeError(PersonaDataError):
    def __init__(self, requested: int, available: int) -> None:
        super().__init__(
            f"cannot draw {requested} distinct persons: {available} have a positive weight"
        )
        self.requested = requested
        self.available = available


class RakingError(PersonaDataError):
    """The person weights cannot be fitted to the national margins."""


class RakingInfeasibleError(RakingError):
    def __init__(self, margin: str, category: str, target: float) -> None:
        super().__init__(
            f"margin {margin!r}: category {category!r} has target {target:,.0f} "
            "but no person with positive weight"
        )
        self.margin = margin
        self.category = category
        self.target = target


class RakingNotConvergedError(RakingError):
    def __init__(self, iterations: int, max_relative_error: float, tolerance: float) -> None:
        super().__init__(
            f"raking did not converge in {iterations} iterations: "
            f"max relative error {max_relative_error:.3g} > tolerance {tolerance:.3g}"
        )
        self.iterations = iterations
        self.max_relative_error = max_relative_error
        self.tolerance = tolerance
