"""Household type, language and children derived from co-resident persons."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.persona.census.dictionary import read_dictionary
from engine.persona.census.households import (
    NO_HOUSEHOLD,
    HouseholdCodes,
    Member,
    derive_household_columns,
    household_codes,
)
from engine.persona.census.pums import read_persons
from tests import personas_fixture as fx


def member(
    relp: str, age: int, sex: str = "1", sporder: int = 1, lanx: str = "2", lanp: str = ""
) -> Member:
    return Member(sporder=sporder, relp=relp, sex=sex, age=age, lanx=lanx, lanp=lanp)


@pytest.fixture
def derived(tmp_path: Path) -> dict[str, HouseholdCodes]:
    census, _ = fx.write_census(tmp_path)
    dictionary = read_dictionary(census / "PUMS_Data_Dictionary_2018.csv")
    table = read_persons(sorted(census.glob("csv_p*.zip")), dictionary)
    columns = derive_household_columns(table)
    by_serial: dict[str, HouseholdCodes] = {}
    for index, serial in enumerate(table.column("SERIALNO")):
        codes = HouseholdCodes(
            columns["HHT"][index], columns["HHL"][index], columns["FPARC"][index]
        )
        assert by_serial.setdefault(serial, codes) == codes, "members of a household differ"
    return by_serial


def test_fixture_households_are_typed_from_their_members(
    derived: dict[str, HouseholdCodes],
) -> None:
    assert derived == {
        # married couple, Spanish spoken by the householder, children aged 3 and 10
        "2018HU0000001": HouseholdCodes(hht="1", hhl="2", fparc="3"),
        # woman living alone: nonfamily, no children field
        "2018HU0000002": HouseholdCodes(hht="6", hhl="1", fparc=""),
        # two roommates; the second person speaks Vietnamese
        "2018HU0000003": HouseholdCodes(hht="5", hhl="4", fparc=""),
        # female householder with her son (16) and her mother
        "2018HU0000004": HouseholdCodes(hht="3", hhl="1", fparc="2"),
        # group quarters: no household
        "2018GQ0000001": HouseholdCodes(hht="", hhl="", fparc=""),
        # an unmarried partner does not make a family
        "2018HU0000006": HouseholdCodes(hht="5", hhl="1", fparc=""),
        # married couple without children
        "2018HU0000007": HouseholdCodes(hht="1", hhl="1", fparc="4"),
    }


def test_related_children_include_grandchildren_but_not_foster_children() -> None:
    grandchild = [member("00", 60, sex="2"), member("07", 4, sporder=2)]
    assert household_codes(grandchild) == HouseholdCodes(hht="3", hhl="1", fparc="1")
    foster = [member("00", 40), member("14", 8, sporder=2)]
    assert household_codes(foster) == HouseholdCodes(hht="5", hhl="1", fparc="")
    adult_child = [member("00", 50), member("01", 49, "2", 2), member("02", 18, sporder=3)]
    assert household_codes(adult_child).fparc == "4"


def test_household_language_uses_the_first_speaker_in_person_order() -> None:
    members = [
        member("02", 12, sporder=3, lanx="1", lanp="1200"),
        member("00", 40, sporder=1),
        member("01", 38, "2", sporder=2, lanx="1", lanp="1170"),  # French: Indo-European
    ]
    assert household_codes(members).hhl == "3"
    arabic = [member("00", 40, lanx="1", lanp="4500")]
    assert household_codes(arabic) == HouseholdCodes(hht="4", hhl="5", fparc="")


def test_household_without_householder_is_left_blank() -> None:
    assert household_codes([member("01", 30), member("02", 5, sporder=2)]) == NO_HOUSEHOLD
