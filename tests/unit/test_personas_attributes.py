"""Census attributes: codes decoded to labels, attributes that do not apply left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.persona.census.attributes import census_attributes, format_income
from engine.persona.census.dictionary import DataDictionary, read_dictionary
from engine.persona.census.errors import UnknownCodeError
from tests import personas_fixture as fx

HOUSEHOLD = {"HHT": "1", "HHL": "2", "FPARC": "3"}


@pytest.fixture
def dictionary(tmp_path: Path) -> DataDictionary:
    return read_dictionary(fx.write_dictionary(tmp_path / "PUMS_Data_Dictionary_2018.csv"))


def test_employed_adult_is_decoded_in_full(dictionary: DataDictionary) -> None:
    row = {**fx.HOUSEHOLDS_A[0], **HOUSEHOLD}
    assert census_attributes(dictionary, row) == {
        "age": "45",
        "race": "Some Other Race alone; Hispanic or Latino: Mexican",
        "sex": "Male",
        "ancestry": "Mexican",
        "household language": "Spanish",
        "education": "Regular high school diploma",
        "employment status": "Civilian employed, at work",
        "class of worker": (
            "Self-employed in own not incorporated business, professional practice, or farm"
        ),
        "industry category": (
            "CON-Construction (The Cleaning Of Buildings And Dwellings Is Incidental)"
        ),
        "occupation category": "CON-Carpenters",
        "marital status": "Married",
        "household type": "Married couple household",
        "family presence and age": "With related children under 5 years and 5 to 17 years",
        "place of birth": "Delaware/DE",
        "citizenship": "Born in the U.S.",
        "veteran status": "Never served in the military",
        "disability": "Without a disability",
        "health insurance": "With health insurance coverage",
        "cognitive difficulty": "No",
        "ability to speak english": "Very well",
        "vision difficulty": "No",
        "hearing difficulty": "No",
        "income": "$52,681",
    }


def test_attributes_that_do_not_apply_are_absent(dictionary: DataDictionary) -> None:
    child = census_attributes(dictionary, {**fx.HOUSEHOLDS_A[2], **HOUSEHOLD})
    assert child["age"] == "3"
    assert child["education"] == "Nursery school, preschool"
    for absent in (
        "employment status",
        "class of worker",
        "industry category",
        "occupation category",
        "income",
        "marital status",  # under 15
        "veteran status",
        "cognitive difficulty",
        "ability to speak english",
        "fertility",
    ):
        assert absent not in child, absent
    man = census_attributes(dictionary, {**fx.HOUSEHOLDS_A[0], **HOUSEHOLD})
    assert "fertility" not in man
    woman = census_attributes(dictionary, {**fx.HOUSEHOLDS_A[1], **HOUSEHOLD})
    assert woman["fertility"] == "No"
    assert woman["ability to speak english"] == "Not well"


def test_nothing_to_report_codes_are_absent(dictionary: DataDictionary) -> None:
    roommate = census_attributes(
        dictionary, {**fx.HOUSEHOLDS_A[6], "HHT": "5", "HHL": "4", "FPARC": ""}
    )
    assert roommate["employment status"] == "Unemployed"
    assert roommate["household type"] == "Nonfamily household: Male householder: Not living alone"
    for absent in (
        "class of worker",
        "industry category",
        "occupation category",
        "family presence and age",
    ):
        assert absent not in roommate, absent
    suppressed = census_attributes(dictionary, {**fx.HOUSEHOLDS_B[3], **HOUSEHOLD})
    assert "ancestry" not in suppressed
    group_quarters = census_attributes(
        dictionary, {**fx.HOUSEHOLDS_B[0], "HHT": "", "HHL": "", "FPARC": ""}
    )
    for absent in ("household type", "household language", "family presence and age"):
        assert absent not in group_quarters, absent
    assert group_quarters["marital status"] == "Never married"


def test_unknown_code_while_decoding_is_an_error(dictionary: DataDictionary) -> None:
    with pytest.raises(UnknownCodeError):
        census_attributes(dictionary, {**fx.HOUSEHOLDS_A[0], **HOUSEHOLD, "HHT": "9"})


@pytest.mark.parametrize(
    ("pincp", "adjinc", "expected"),
    [
        ("", "1013097", None),
        ("0", "1013097", "$0"),
        ("52000", "1013097", "$52,681"),
        ("-500", "1013097", "-$507"),
        ("4209995", "1000000", "$4,209,995"),
    ],
)
def test_income_is_adjusted_and_formatted(pincp: str, adjinc: str, expected: str | None) -> None:
    assert format_income(pincp, adjinc) == expected
