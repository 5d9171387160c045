"""The national margins the person weights are raked to, as data: categories, where each
category's ACS 2022 count is in the Data Profiles, and how a PUMS person falls into it.

Margins (all national, ACS 2022 1-year):
- sex (DP05, total population);
- age in DP05's 13 groups (total population). Age x sex is not raked jointly: DP05 gives
  the two margins separately, and the B01001 xlsx tables would add a dependency for little;
- Hispanic origin and non-Hispanic race alone (DP05). From 2020 the ACS codes race
  differently (many more "Some other race" and "Two or more races" answers, mostly among
  Hispanic people), so 2018 RAC1P and 2022 "race alone" shares of the whole population are
  not comparable. We rake on: Hispanic (any race), and non-Hispanic White / Black / American
  Indian and Alaska Native / Asian / Native Hawaiian and Other Pacific Islander alone, which
  moved little; the last category, non-Hispanic Some other race alone or Two or more races,
  is what the 2022 lines leave (it carries the coding change, 4.9 % of the population);
- nativity (DP02 place of birth, total population);
- language spoken at home in the ACS four groups (DP02, population 5 years and over);
- educational attainment (DP02, population 25 years and over).

Universes nest: a person outside a margin's universe (a 3-year-old for education) is not
touched by that margin. The DP05 age groups add up to the DP02 universes exactly (5+, 25+).
Only sex, age, race/Hispanic origin and adult education are `checked` against a tolerance
in the report; nativity and language are raked but reported for information.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.persona.census import codes
from engine.persona.census.national import ProfileTable, read_profile

OUTSIDE: Final = -1

#: Data Profile file names in the national directory.
PROFILE_FILES: Final[Mapping[str, str]] = {
    "DP02": "ACSDP1Y2022.DP02.csv",
    "DP05": "ACSDP1Y2022.DP05.csv",
}

LabelPath = tuple[str, ...]


@dataclass(frozen=True)
class Category:
    name: str
    #: Data Profile rows whose estimates add up to this category's national count.
    rows: tuple[LabelPath, ...]


@dataclass(frozen=True)
class MarginSpec:
    name: str
    table: str
    columns: tuple[str, ...]
    #: Category index of a person from the values of `columns`, or OUTSIDE the universe.
    classify: Callable[[tuple[str, ...]], int]
    categories: tuple[Category, ...]
    checked: bool


def _under(*path: str) -> Callable[[str], LabelPath]:
    return lambda label: (*path, label)


# --- sex ---------------------------------------------------------------------------------
_POPULATION_ROW = _under("SEX AND AGE", "Total population")
_SEX_INDEX: Final = {codes.MALE: 0, codes.FEMALE: 1}


def _classify_sex(values: tuple[str, ...]) -> int:
    return _SEX_INDEX.get(values[0], OUTSIDE)


# --- age ---------------------------------------------------------------------------------
AGE_GROUPS: Final[tuple[tuple[int, str], ...]] = (
    (0, "Under 5 years"),
    (5, "5 to 9 years"),
    (10, "10 to 14 years"),
    (15, "15 to 19 years"),
    (20, "20 to 24 years"),
    (25, "25 to 34 years"),
    (35, "35 to 44 years"),
    (45, "45 to 54 years"),
    (55, "55 to 59 years"),
    (60, "60 to 64 years"),
    (65, "65 to 74 years"),
    (75, "75 to 84 years"),
    (85, "85 years and over"),
)
_AGE_STARTS: Final = [start for start, _ in AGE_GROUPS]


def _classify_age(values: tuple[str, ...]) -> int:
    return bisect.bisect_right(_AGE_STARTS, int(values[0])) - 1


# --- Hispanic origin and race ------------------------------------------------------------
_RACE_ROW = _under("HISPANIC OR LATINO AND RACE", "Total population", "Not Hispanic or Latino")
#: RAC1P of non-Hispanic persons → category index (0 is Hispanic of any race).
_RACE_INDEX: Final = {"1": 1, "2": 2, "3": 3, "4": 3, "5": 3, "6": 4, "7": 5, "8": 6, "9": 6}


def _classify_race(values: tuple[str, ...]) -> int:
    hisp, rac1p = values
    if hisp != codes.NOT_HISPANIC:
        return 0
    return _RACE_INDEX.get(rac1p, OUTSIDE)


# --- nativity ----------------------------------------------------------------------------
_NATIVITY_ROW = _under("PLACE OF BIRTH", "Total population")
_NATIVITY_INDEX: Final = {"1": 0, "2": 1}


def _classify_nativity(values: tuple[str, ...]) -> int:
    return _NATIVITY_INDEX.get(values[0], OUTSIDE)


# --- language spoken at home (5+) ----------------------------------------------------------
_LANGUAGE_ROW = _under("LANGUAGE SPOKEN AT HOME", "Population 5 years and over")
_LANGUAGE_INDEX: Final = {
    codes.HHL_ENGLISH: 0,
    codes.HHL_SPANISH: 1,
    codes.HHL_INDO_EUROPEAN: 2,
    codes.HHL_ASIAN_PACIFIC: 3,
    codes.HHL_OTHER: 4,
}


def _classify_language(values: tuple[str, ...]) -> int:
    lanx, lanp = values
    if lanx == codes.SPEAKS_ONLY_ENGLISH:
        return 0
    if lanx == codes.SPEAKS_OTHER_LANGUAGE:
        return _LANGUAGE_INDEX[codes.language_group(lanp)]
    return OUTSIDE


# --- educational attainment (25+) ----------------------------------------------------------
_EDUCATION_ROW = _under("EDUCATIONAL ATTAINMENT", "Population 25 years and over")
#: Upper SCHL code of each DP02 education group, in order.
_SCHL_UPPER: Final = [11, 15, 17, 19, 20, 21, 24]


def _classify_education(values: tuple[str, ...]) -> int:
    age, schl = values
    if int(age) < 25 or not schl:
        return OUTSIDE
    return bisect.bisect_left(_SCHL_UPPER, int(schl))


def _categories(row: Callable[[str], LabelPath], names: Sequence[str]) -> tuple[Category, ...]:
    return tuple(Category(name, (row(name),)) for name in names)


_HISPANIC_ROW: Final = (
    "HISPANIC OR LATINO AND RACE",
    "Total population",
    "Hispanic or Latino (of any race)",
)

MARGINS: Final[tuple[MarginSpec, ...]] = (
    MarginSpec(
        name="sex",
        table="DP05",
        columns=("SEX",),
        classify=_classify_sex,
        categories=_categories(_POPULATION_ROW, ("Male", "Female")),
        checked=True,
    ),
    MarginSpec(
        name="age",
        table="DP05",
        columns=("AGEP",),
        classify=_classify_age,
        categories=_categories(_POPULATION_ROW, [label for _, label in AGE_GROUPS]),
        checked=True,
    ),
    MarginSpec(
        name="race / Hispanic origin",
        table="DP05",
        columns=("HISP", "RAC1P"),
        classify=_classify_race,
        categories=(
            Category("Hispanic or Latino (any race)", (_HISPANIC_ROW,)),
            *_categories(
                _RACE_ROW,
                (
                    "White alone",
                    "Black or African American alone",
                    "American Indian and Alaska Native alone",
                    "Asian alone",
                    "Native Hawaiian and Other Pacific Islander alone",
                ),
            ),
            Category(
                "Some Other Race alone or Two or More Races",
                (_RACE_ROW("Some Other Race alone"), _RACE_ROW("Two or More Races")),
            ),
        ),
        checked=True,
    ),
    MarginSpec(
        name="nativity",
        table="DP02",
        columns=("NATIVITY",),
        classify=_classify_nativity,
        categories=_categories(_NATIVITY_ROW, ("Native", "Foreign born")),
        checked=False,
    ),
    MarginSpec(
        name="language at home (5+)",
        table="DP02",
        columns=("LANX", "LANP"),
        classify=_classify_language,
        categories=_categories(
            _LANGUAGE_ROW,
            (
                "English only",
                "Spanish",
                "Other Indo-European languages",
                "Asian and Pacific Islander languages",
                "Other languages",
            ),
        ),
        checked=False,
    ),
    MarginSpec(
        name="education (25+)",
        table="DP02",
        columns=("AGEP", "SCHL"),
        classify=_classify_education,
        categories=_categories(
            _EDUCATION_ROW,
            (
                "Less than 9th grade",
                "9th to 12th grade, no diploma",
                "High school graduate (includes equivalency)",
                "Some college, no degree",
                "Associate's degree",
                "Bachelor's degree",
                "Graduate or professional degree",
            ),
        ),
        checked=True,
    ),
)


def classify(spec: MarginSpec, columns: Mapping[str, Sequence[str]]) -> npt.NDArray[np.int64]:
    """Category index (or OUTSIDE) of every person for one margin."""
    picked = [columns[name] for name in spec.columns]
    return np.fromiter((spec.classify(values) for values in zip(*picked, strict=True)), np.int64)


def read_profiles(national_dir: Path) -> dict[str, ProfileTable]:
    return {table: read_profile(national_dir / name) for table, name in PROFILE_FILES.items()}


def national_targets(
    spec: MarginSpec, profiles: Mapping[str, ProfileTable]
) -> npt.NDArray[np.float64]:
    """National counts of the margin's categories."""
    profile = profiles[spec.table]
    return np.array(
        [sum(profile.estimate(row) for row in category.rows) for category in spec.categories],
        dtype=np.float64,
    )
