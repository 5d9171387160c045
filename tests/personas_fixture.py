"""A tiny census fixture in the real file formats, written into a test's tmp_path.

- `PUMS_Data_Dictionary_2018.csv`: NAME/VAL rows for the variables the builder reads, housing
  part first (HHT, HHL, FPARC and the repeated RT/SERIALNO/ADJINC), then the person part.
- `csv_pxa.zip` (households 1-4) and `csv_pxb.zip` (group quarters, households 6-7), each
  one CSV (plus a README, like the Census Bureau zips) with extra unused columns.
- `acs_2022_national/ACSDP1Y2022.DP0{2,5}.csv`: Data Profiles whose targets are the
  fixture's own person counts x 100,000, so raking has an exact solution.

The 15 persons, by household:
  HU1 married couple, Spanish-speaking, children 3 and 10 (HHT 1, HHL 2, FPARC 3)
  HU2 woman of 70 living alone (HHT 6, HHL 1, no FPARC)
  HU3 two male roommates; the second speaks Vietnamese (HHT 5, HHL 4, no FPARC)
  HU4 divorced mother, son 16, her mother (HHT 3, HHL 1, FPARC 2)
  GQ1 man of 20 in group quarters (no household fields)
  HU6 man with unmarried partner (HHT 5, no FPARC)
  HU7 married couple without children (HHT 1, FPARC 4)
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

ValueRows = Sequence[tuple[str, str, str]]

NA_WORKER = (
    "N/A (less than 16 years old/NILF who last worked more than 5 years ago or never worked)"
)
NEVER_WORKED = "Unemployed And Last Worked 5 Years Ago Or Earlier Or Never Worked"

HOUSING_VARIABLES: Final[dict[str, tuple[str, int, str, ValueRows]]] = {
    "RT": ("C", 1, "Record Type", [("H", "H", "Housing Record"), ("P", "P", "Person Record")]),
    "SERIALNO": (
        "C",
        13,
        "Housing unit/GQ person serial number",
        [
            ("2018GQ0000001", "2018GQ9999999", "GQ Unique identifier"),
            ("2018HU0000001", "2018HU9999999", "HU Unique identifier"),
        ],
    ),
    "ADJINC": ("C", 7, "Adjustment factor", [("1013097", "1013097", "2018 factor (1.013097)")]),
    "FPARC": (
        "C",
        1,
        "Family presence and age of related children",
        [
            ("b", "b", "N/A (GQ/vacant/not a family)"),
            ("1", "1", "With related children under 5 years only"),
            ("2", "2", "With related children 5 to 17 years only"),
            ("3", "3", "With related children under 5 years and 5 to 17 years"),
            ("4", "4", "No related children"),
        ],
    ),
    "HHL": (
        "C",
        1,
        "Household language",
        [
            ("b", "b", "N/A (GQ/vacant)"),
            ("1", "1", "English only"),
            ("2", "2", "Spanish"),
            ("3", "3", "Other Indo-European languages"),
            ("4", "4", "Asian and Pacific Island languages"),
            ("5", "5", "Other language"),
        ],
    ),
    "HHT": (
        "C",
        1,
        "Household/family type",
        [
            ("b", "b", "N/A (GQ/vacant)"),
            ("1", "1", "Married couple household"),
            ("2", "2", "Other family household: Male householder, no spouse present"),
            ("3", "3", "Other family household: Female householder, no spouse present"),
            ("4", "4", "Nonfamily household: Male householder: Living alone"),
            ("5", "5", "Nonfamily household: Male householder: Not living alone"),
            ("6", "6", "Nonfamily household: Female householder: Living alone"),
            ("7", "7", "Nonfamily household: Female householder: Not living alone"),
        ],
    ),
}

YES_NO: Final = [("1", "1", "Yes"), ("2", "2", "No")]

PERSON_VARIABLES: Final[dict[str, tuple[str, int, str, ValueRows]]] = {
    "RT": HOUSING_VARIABLES["RT"],
    "SERIALNO": HOUSING_VARIABLES["SERIALNO"],
    "SPORDER": ("N", 2, "Person number", [("01", "20", "Person number")]),
    "ADJINC": HOUSING_VARIABLES["ADJINC"],
    "PWGTP": ("N", 5, "Person's weight", [("1", "9999", "Integer weight of person")]),
    "AGEP": ("N", 2, "Age", [("0", "0", "Under 1 year"), ("1", "99", "1 to 99 years")]),
    "CIT": (
        "C",
        1,
        "Citizenship status",
        [
            ("1", "1", "Born in the U.S."),
            ("4", "4", "U.S. citizen by naturalization"),
            ("5", "5", "Not a citizen of the U.S."),
        ],
    ),
    "COW": (
        "C",
        1,
        "Class of worker",
        [
            ("b", "b", NA_WORKER),
            ("1", "1", "Employee of a private for-profit company or business"),
            ("3", "3", "Local government employee (city, county, etc.)"),
            (
                "6",
                "6",
                "Self-employed in own not incorporated business, professional practice, or farm",
            ),
            ("9", "9", "Unemployed and last worked 5 years ago or earlier or never worked"),
        ],
    ),
    "DEAR": ("C", 1, "Hearing difficulty", YES_NO),
    "DEYE": ("C", 1, "Vision difficulty", YES_NO),
    "DREM": ("C", 1, "Cognitive difficulty", [("b", "b", "N/A (Less than 5 years old)"), *YES_NO]),
    "ENG": (
        "C",
        1,
        "Ability to speak English",
        [
            ("b", "b", "N/A (less than 5 years old/speaks only English)"),
            ("1", "1", "Very well"),
            ("3", "3", "Not well"),
        ],
    ),
    "FER": (
        "C",
        1,
        "Gave birth to child within the past 12 months",
        [("b", "b", "N/A (less than 15 years/greater than 50 years/ male)"), *YES_NO],
    ),
    "LANX": (
        "C",
        1,
        "Language other than English spoken at home",
        [
            ("b", "b", "N/A (less than 5 years old)"),
            ("1", "1", "Yes, speaks another language"),
            ("2", "2", "No, speaks only English"),
        ],
    ),
    "MAR": (
        "C",
        1,
        "Marital status",
        [
            ("1", "1", "Married"),
            ("2", "2", "Widowed"),
            ("3", "3", "Divorced"),
            ("5", "5", "Never married or under 15 years old"),
        ],
    ),
    "MIL": (
        "C",
        1,
        "Military service",
        [
            ("b", "b", "N/A (less than 17 years old)"),
            ("2", "2", "On active duty in the past, but not now"),
            ("4", "4", "Never served in the military"),
        ],
    ),
    "RELP": (
        "C",
        2,
        "Relationship",
        [
            ("00", "00", "Reference person"),
            ("01", "01", "Husband/wife"),
            ("02", "02", "Biological son or daughter"),
            ("06", "06", "Father or mother"),
            ("12", "12", "Housemate or roommate"),
            ("13", "13", "Unmarried partner"),
            ("17", "17", "Noninstitutionalized group quarters population"),
        ],
    ),
    "SCH": (
        "C",
        1,
        "School enrollment",
        [
            ("b", "b", "N/A (less than 3 years old)"),
            ("1", "1", "No, has not attended in the last 3 months"),
            ("2", "2", "Yes, public school or public college"),
        ],
    ),
    "SCHL": (
        "C",
        2,
        "Educational attainment",
        [
            ("bb", "bb", "N/A (less than 3 years old)"),
            ("02", "02", "Nursery school, preschool"),
            ("07", "07", "Grade 4"),
            ("14", "14", "Grade 11"),
            ("16", "16", "Regular high school diploma"),
            ("19", "19", "1 or more years of college credit, no degree"),
            ("20", "20", "Associate's degree"),
            ("21", "21", "Bachelor's degree"),
            ("22", "22", "Master's degree"),
            ("24", "24", "Doctorate degree"),
        ],
    ),
    "SEX": ("C", 1, "Sex", [("1", "1", "Male"), ("2", "2", "Female")]),
    "ANC1P": (
        "C",
        3,
        "Recoded Detailed Ancestry - first entry",
        [
            ("000", "000", "Suppressed for data year 2018 for select PUMAs"),
            ("022", "022", "English"),
            ("210", "210", "Mexican"),
            ("785", "785", "Vietnamese"),
            ("999", "999", "Not reported"),
        ],
    ),
    "DIS": (
        "C",
        1,
        "Disability recode",
        [("1", "1", "With a disability"), ("2", "2", "Without a disability")],
    ),
    "ESR": (
        "C",
        1,
        "Employment status recode",
        [
            ("b", "b", "N/A (less than 16 years old)"),
            ("1", "1", "Civilian employed, at work"),
            ("3", "3", "Unemployed"),
            ("6", "6", "Not in labor force"),
        ],
    ),
    "HICOV": (
        "C",
        1,
        "Health insurance coverage recode",
        [("1", "1", "With health insurance coverage"), ("2", "2", "No health insurance coverage")],
    ),
    "HISP": (
        "C",
        2,
        "Recoded detailed Hispanic origin",
        [("01", "01", "Not Spanish/Hispanic/Latino"), ("02", "02", "Mexican")],
    ),
    "INDP": (
        "C",
        4,
        "Industry recode",
        [
            ("bbbb", "bbbb", NA_WORKER),
            (
                "0770",
                "0770",
                "CON-Construction (The Cleaning Of Buildings And Dwellings Is Incidental)",
            ),
            ("7860", "7860", "EDU-Elementary And Secondary Schools"),
            ("9920", "9920", NEVER_WORKED),
        ],
    ),
    "LANP": (
        "C",
        4,
        "Language spoken at home",
        [
            ("bbbb", "bbbb", "N/A (GQ/vacant)"),
            ("1200", "1200", "Spanish"),
            ("1960", "1960", "Vietnamese"),
        ],
    ),
    "NATIVITY": ("C", 1, "Nativity", [("1", "1", "Native"), ("2", "2", "Foreign born")]),
    "OCCP": (
        "C",
        4,
        "Occupation recode",
        [
            ("bbbb", "bbbb", NA_WORKER),
            ("2310", "2310", "EDU-Elementary And Middle School Teachers"),
            ("6230", "6230", "CON-Carpenters"),
            ("9920", "9920", NEVER_WORKED),
        ],
    ),
    "PINCP": (
        "N",
        7,
        "Total person's income",
        [
            ("bbbbbbb", "bbbbbbb", "N/A (less than 15 years old)"),
            ("0", "0", "None"),
            ("-19998", "-19998", "Loss of $19998 or more"),
            ("-19997", "-1", "Loss $1 to $19997"),
            ("1", "4209995", "$1 to $4209995"),
        ],
    ),
    "POBP": (
        "C",
        3,
        "Place of birth (Recode)",
        [("010", "010", "Delaware/DE"), ("247", "247", "Vietnam"), ("303", "303", "Mexico")],
    ),
    "RAC1P": (
        "C",
        1,
        "Recoded detailed race code",
        [
            ("1", "1", "White alone"),
            ("2", "2", "Black or African American alone"),
            ("6", "6", "Asian alone"),
            ("8", "8", "Some Other Race alone"),
        ],
    ),
}

#: Columns of the fixture CSVs: unused ones around the ones the builder reads.
EXTRA_COLUMNS: Final = ("RT", "DIVISION", "PUMA", "PWGTP1", "PWGTP2")


def _dictionary_lines(
    variables: Mapping[str, tuple[str, int, str, ValueRows]],
) -> Iterable[list[str]]:
    for name, (kind, width, description, values) in variables.items():
        yield ["NAME", name, kind, str(width), description]
        for low, high, label in values:
            yield ["VAL", name, kind, str(width), low, high, label]


def write_dictionary(
    path: Path, person_variables: Mapping[str, tuple[str, int, str, ValueRows]] = PERSON_VARIABLES
) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        for line in _dictionary_lines(HOUSING_VARIABLES):
            writer.writerow(line)
        for line in _dictionary_lines(person_variables):
            writer.writerow(line)
    return path


def person(
    serial: str, sporder: int, relp: str, age: int, sex: str, **codes: str
) -> dict[str, str]:
    """A person record with plausible defaults; fields that do not apply at `age` are blank."""
    record = {
        "SERIALNO": serial,
        "SPORDER": f"{sporder:02d}",
        "RELP": relp,
        "AGEP": str(age),
        "SEX": sex,
        "PWGTP": "100",
        "ADJINC": "1013097",
        "RAC1P": "1",
        "HISP": "01",
        "ANC1P": "022",
        "LANX": "2" if age >= 5 else "",
        "LANP": "",
        "ENG": "",
        "SCHL": "16" if age >= 3 else "",
        "SCH": "1" if age >= 3 else "",
        "ESR": "6" if age >= 16 else "",
        "COW": "",
        "INDP": "",
        "OCCP": "",
        "PINCP": "0" if age >= 15 else "",
        "MAR": "5",
        "POBP": "010",
        "NATIVITY": "1",
        "CIT": "1",
        "MIL": "4" if age >= 17 else "",
        "DIS": "2",
        "HICOV": "1",
        "DREM": "2" if age >= 5 else "",
        "DEYE": "2",
        "DEAR": "2",
        "FER": "2" if sex == "2" and 15 <= age <= 50 else "",
    }
    record.update(codes)
    return record


SPANISH = {"LANX": "1", "LANP": "1200", "ENG": "1"}
MEXICAN = {"HISP": "02", "RAC1P": "8", "ANC1P": "210"}
TEACHER = {"ESR": "1", "COW": "3", "INDP": "7860", "OCCP": "2310"}

HOUSEHOLDS_A: Final = (
    person(
        "2018HU0000001",
        1,
        "00",
        45,
        "1",
        **MEXICAN,
        **SPANISH,
        MAR="1",
        ESR="1",
        COW="6",
        INDP="0770",
        OCCP="6230",
        PINCP="52000",
        PWGTP="180",
    ),
    person(
        "2018HU0000001",
        2,
        "01",
        43,
        "2",
        **MEXICAN,
        **{**SPANISH, "ENG": "3"},
        MAR="1",
        SCHL="14",
        NATIVITY="2",
        CIT="5",
        POBP="303",
        PWGTP="60",
    ),
    person("2018HU0000001", 3, "02", 3, "2", **MEXICAN, SCHL="02", SCH="2", PWGTP="75"),
    person("2018HU0000001", 4, "02", 10, "1", **MEXICAN, **SPANISH, SCHL="07", SCH="2"),
    person("2018HU0000002", 1, "00", 70, "2", MAR="2", PINCP="24000", DIS="1", MIL="2", PWGTP="40"),
    person("2018HU0000003", 1, "00", 30, "1", **TEACHER, SCHL="21", PINCP="48000"),
    person(
        "2018HU0000003",
        2,
        "12",
        28,
        "1",
        RAC1P="6",
        ANC1P="785",
        LANX="1",
        LANP="1960",
        ENG="1",
        SCHL="22",
        NATIVITY="2",
        CIT="4",
        POBP="247",
        ESR="3",
        COW="9",
        INDP="9920",
        OCCP="9920",
        PWGTP="210",
    ),
    person(
        "2018HU0000004", 1, "00", 35, "2", RAC1P="2", **TEACHER, SCHL="19", MAR="3", PINCP="39000"
    ),
    person("2018HU0000004", 2, "02", 16, "1", RAC1P="2", SCHL="14", SCH="2", PWGTP="130"),
    person("2018HU0000004", 3, "06", 62, "2", RAC1P="2", SCHL="07", MAR="2", PINCP="15000"),
)

HOUSEHOLDS_B: Final = (
    person("2018GQ0000001", 1, "17", 20, "1", SCHL="19", SCH="2", PWGTP="90"),
    person(
        "2018HU0000006",
        1,
        "00",
        50,
        "1",
        SCHL="20",
        ESR="1",
        COW="1",
        INDP="0770",
        OCCP="6230",
        PINCP="-500",
    ),
    person("2018HU0000006", 2, "13", 48, "2", PWGTP="20"),
    person("2018HU0000007", 1, "00", 60, "1", ANC1P="000", SCHL="24", MAR="1", PINCP="91000"),
    person(
        "2018HU0000007", 2, "01", 58, "2", ANC1P="000", RAC1P="8", SCHL="21", MAR="1", PWGTP="300"
    ),
)

ALL_PERSONS: Final = HOUSEHOLDS_A + HOUSEHOLDS_B


def csv_text(persons: Sequence[Mapping[str, str]], drop: str | None = None) -> str:
    """The persons as a PUMS-style CSV, optionally without column `drop`."""
    columns = [c for c in (*EXTRA_COLUMNS[:3], *persons[0], *EXTRA_COLUMNS[3:]) if c != drop]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    extra = {"RT": "P", "DIVISION": "1", "PUMA": "00100", "PWGTP1": "7", "PWGTP2": "9"}
    for record in persons:
        writer.writerow([record.get(column, extra.get(column, "")) for column in columns])
    return buffer.getvalue()


def write_zip(path: Path, member: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, text)
        archive.writestr("ACS2018_PUMS_README.pdf", b"%PDF-1.4 fixture")
    return path


# --- national Data Profiles ------------------------------------------------------------------
PER_PERSON: Final = 100_000

#: (depth, label, persons): the fixture's counts; depth 0 rows are section headings.
DP05_ROWS: Final = (
    (0, "SEX AND AGE", None),
    (1, "Total population", 15),
    (2, "Male", 8),
    (2, "Female", 7),
    (2, "Under 5 years", 1),
    (2, "5 to 9 years", 0),
    (2, "10 to 14 years", 1),
    (2, "15 to 19 years", 1),
    (2, "20 to 24 years", 1),
    (2, "25 to 34 years", 2),
    (2, "35 to 44 years", 2),
    (2, "45 to 54 years", 3),
    (2, "55 to 59 years", 1),
    (2, "60 to 64 years", 2),
    (2, "65 to 74 years", 1),
    (2, "75 to 84 years", 0),
    (2, "85 years and over", 0),
    (2, "18 years and over", 12),
    (3, "Male", 99),  # a decoy: same label, deeper path
    (0, "RACE", None),
    (1, "Total population", 15),
    (2, "One race", 15),
    (3, "White", 99),
    (0, "HISPANIC OR LATINO AND RACE", None),
    (1, "Total population", 15),
    (2, "Hispanic or Latino (of any race)", 4),
    (3, "Mexican", 4),
    (2, "Not Hispanic or Latino", 11),
    (3, "White alone", 6),
    (3, "Black or African American alone", 3),
    (3, "American Indian and Alaska Native alone", 0),
    (3, "Asian alone", 1),
    (3, "Native Hawaiian and Other Pacific Islander alone", 0),
    (3, "Some Other Race alone", 1),
    (3, "Two or More Races", 0),
    (4, "Two races including Some Other Race", 0),
)

DP02_ROWS: Final = (
    (0, "EDUCATIONAL ATTAINMENT", None),
    (1, "Population 25 years and over", 11),
    (2, "Less than 9th grade", 1),
    (2, "9th to 12th grade, no diploma", 1),
    (2, "High school graduate (includes equivalency)", 3),
    (2, "Some college, no degree", 1),
    (2, "Associate's degree", 1),
    (2, "Bachelor's degree", 2),
    (2, "Graduate or professional degree", 2),
    (0, "PLACE OF BIRTH", None),
    (1, "Total population", 15),
    (2, "Native", 13),
    (3, "Born in United States", 13),
    (2, "Foreign born", 2),
    (0, "LANGUAGE SPOKEN AT HOME", None),
    (1, "Population 5 years and over", 14),
    (2, "English only", 10),
    (2, "Language other than English", 4),
    (3, 'Speak English less than "very well"', 1),
    (2, "Spanish", 3),
    (3, 'Speak English less than "very well"', 1),
    (2, "Other Indo-European languages", 0),
    (2, "Asian and Pacific Islander languages", 1),
    (2, "Other languages", 0),
)


def profile_text(rows: Sequence[tuple[int, str, int | None]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(
        ["Label (Grouping)", "United States!!Estimate", "United States!!Margin of Error"]
    )
    for depth, label, persons in rows:
        estimate = "" if persons is None else f"{persons * PER_PERSON:,}"
        writer.writerow(["\xa0" * 4 * depth + label, estimate, "±1"])
    return buffer.getvalue()


def write_census(root: Path) -> tuple[Path, Path]:
    """Write the whole fixture under `root`; returns (census_dir, national_dir)."""
    census = root / "acs_pums_2018"
    national = root / "acs_2022_national"
    census.mkdir(parents=True)
    national.mkdir(parents=True)
    write_dictionary(census / "PUMS_Data_Dictionary_2018.csv")
    write_zip(census / "csv_pxa.zip", "psam_p98.csv", csv_text(HOUSEHOLDS_A))
    write_zip(census / "csv_pxb.zip", "psam_p99.csv", csv_text(HOUSEHOLDS_B))
    (national / "ACSDP1Y2022.DP05.csv").write_text(profile_text(DP05_ROWS), encoding="utf-8-sig")
    (national / "ACSDP1Y2022.DP02.csv").write_text(profile_text(DP02_ROWS), encoding="utf-8-sig")
    return census, national
