"""Census attributes of one person: PUMS codes decoded to dictionary labels.

An attribute is absent when it does not apply to the person: its code is a dictionary
"N/A (...)" code (a blank field), or one of the codes below that say "nothing to report":
- ANC1P 000 (suppressed for 2018 in some PUMAs), 996 (uncodable), 998 (other responses),
  999 (not reported);
- COW 9, INDP 9920, OCCP 9920: unemployed and last worked 5+ years ago or never worked;
- MAR for persons under 15 (the code "Never married or under 15 years old" merges them).
Two labels are shortened (`LABEL_OVERRIDES`). Race is RAC1P's label, followed by the
Hispanic origin (HISP) for Hispanic persons: "White alone; Hispanic or Latino: Mexican".
Age is AGEP in years; income is PINCP x ADJINC / 1,000,000 (2018 dollars), whole dollars.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from engine.persona.census import codes
from engine.persona.census.dictionary import NOT_APPLICABLE_PREFIX, DataDictionary

#: (attribute, PUMS variable) decoded by dictionary label, in persona order.
LABELLED: Final[tuple[tuple[str, str], ...]] = (
    ("sex", "SEX"),
    ("ancestry", "ANC1P"),
    ("household language", "HHL"),
    ("education", "SCHL"),
    ("employment status", "ESR"),
    ("class of worker", "COW"),
    ("industry category", "INDP"),
    ("occupation category", "OCCP"),
    ("marital status", "MAR"),
    ("household type", "HHT"),
    ("family presence and age", "FPARC"),
    ("place of birth", "POBP"),
    ("citizenship", "CIT"),
    ("veteran status", "MIL"),
    ("disability", "DIS"),
    ("health insurance", "HICOV"),
    ("cognitive difficulty", "DREM"),
    ("ability to speak english", "ENG"),
    ("vision difficulty", "DEYE"),
    ("fertility", "FER"),
    ("hearing difficulty", "DEAR"),
)

#: Codes that carry no information about the person (see module docstring).
NOTHING_TO_REPORT: Final[Mapping[str, frozenset[str]]] = {
    "ANC1P": frozenset({"000", "996", "998", "999"}),
    "COW": frozenset({"9"}),
    "INDP": frozenset({"9920"}),
    "OCCP": frozenset({"9920"}),
}

#: Minimum age for a variable to apply although the dictionary gives it a code.
MINIMUM_AGE: Final[Mapping[str, int]] = {"MAR": 15}

LABEL_OVERRIDES: Final[Mapping[tuple[str, str], str]] = {
    ("MAR", "5"): "Never married",
    ("RAC1P", "5"): "American Indian and/or Alaska Native, tribe specified or not specified",
}

INCOME_SCALE: Final = 1_000_000


def decode(dictionary: DataDictionary, variable: str, code: str) -> str | None:
    """The label of a code, or None when the code means the variable does not apply."""
    if code in NOTHING_TO_REPORT.get(variable, frozenset()):
        return None
    override = LABEL_OVERRIDES.get((variable, code))
    if override is not None:
        return override
    label = dictionary.label(variable, code)
    return None if label.startswith(NOT_APPLICABLE_PREFIX) else label


def format_income(pincp: str, adjinc: str) -> str | None:
    """`$34,952`, `-$1,200` or `$0`; None for a blank PINCP (under 15)."""
    if not pincp:
        return None
    dollars = round(int(pincp) * int(adjinc) / INCOME_SCALE)
    sign = "-" if dollars < 0 else ""
    return f"{sign}${abs(dollars):,}"


def race_label(dictionary: DataDictionary, rac1p: str, hisp: str) -> str:
    race = decode(dictionary, "RAC1P", rac1p) or dictionary.label("RAC1P", rac1p)
    if hisp == codes.NOT_HISPANIC:
        return race
    return f"{race}; Hispanic or Latino: {dictionary.label('HISP', hisp)}"


def census_attributes(dictionary: DataDictionary, row: Mapping[str, str]) -> dict[str, str]:
    """The census attributes of one person (`row`: PUMS and derived household codes)."""
    age = int(row["AGEP"])
    attributes = {"age": str(age), "race": race_label(dictionary, row["RAC1P"], row["HISP"])}
    for name, variable in LABELLED:
        if age < MINIMUM_AGE.get(variable, 0):
            continue
        label = decode(dictionary, variable, row[variable])
        if label is not None:
            attributes[name] = label
    income = format_income(row["PINCP"], row["ADJINC"])
    if income is not None:
        attributes["income"] = income
    return attributes
