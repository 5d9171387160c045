"""Reading the PUMS data dictionary and person zips (fixture written into tmp_path)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from engine.persona.census.dictionary import read_dictionary
from engine.persona.census.errors import (
    InputNotFoundError,
    MalformedRowError,
    MissingColumnError,
    MissingVariableError,
    UnknownCodeError,
    ZipLayoutError,
)
from engine.persona.census.pums import PERSON_COLUMNS, person_zips, read_persons
from tests import personas_fixture as fx


@pytest.fixture
def dictionary_path(tmp_path: Path) -> Path:
    return fx.write_dictionary(tmp_path / "PUMS_Data_Dictionary_2018.csv")


def test_dictionary_decodes_exact_codes_ranges_and_blanks(dictionary_path: Path) -> None:
    dictionary = read_dictionary(dictionary_path)
    assert dictionary.label("SEX", "2") == "Female"
    assert dictionary.label("OCCP", "2310") == "EDU-Elementary And Middle School Teachers"
    assert dictionary.label("AGEP", "0") == "Under 1 year"
    assert dictionary.label("AGEP", "57") == "1 to 99 years"
    assert dictionary.label("PINCP", "-250") == "Loss $1 to $19997"
    assert dictionary.label("PINCP", "") == "N/A (less than 15 years old)"
    assert dictionary.label("SCHL", "") == "N/A (less than 3 years old)"
    assert dictionary.label("SERIALNO", "2018GQ0000042") == "GQ Unique identifier"


def test_dictionary_merges_variables_repeated_in_housing_and_person_parts(
    dictionary_path: Path,
) -> None:
    dictionary = read_dictionary(dictionary_path)
    adjinc = dictionary.variable("ADJINC")
    assert adjinc.line == 7  # after RT and SERIALNO (a NAME and two VAL rows each)
    assert adjinc.labels == {"1013097": "2018 factor (1.013097)"}
    assert dictionary.label("HHT", "6") == "Nonfamily household: Female householder: Living alone"


def test_dictionary_errors_name_the_dictionary_file(dictionary_path: Path) -> None:
    dictionary = read_dictionary(dictionary_path)
    with pytest.raises(MissingVariableError) as missing:
        dictionary.variable("RELSHIPP")
    assert missing.value.variable == "RELSHIPP"
    assert str(dictionary_path) in str(missing.value)
    with pytest.raises(UnknownCodeError) as unknown:
        dictionary.label("SEX", "3")
    assert (unknown.value.variable, unknown.value.code) == ("SEX", "3")
    assert str(dictionary_path) in str(unknown.value)
    with pytest.raises(InputNotFoundError):
        read_dictionary(dictionary_path.with_name("absent.csv"))


def test_reads_only_the_requested_columns_from_every_zip(
    tmp_path: Path, dictionary_path: Path
) -> None:
    a = fx.write_zip(tmp_path / "csv_pxa.zip", "psam_p98.csv", fx.csv_text(fx.HOUSEHOLDS_A))
    b = fx.write_zip(tmp_path / "csv_pxb.zip", "psam_p99.csv", fx.csv_text(fx.HOUSEHOLDS_B))
    assert person_zips(tmp_path) == [a, b]
    table = read_persons([a, b], read_dictionary(dictionary_path))
    assert len(table) == len(fx.ALL_PERSONS) == 15
    assert tuple(table.columns) == PERSON_COLUMNS
    assert table.column("SERIALNO")[10] == "2018GQ0000001"
    assert table.column("RELP")[:4] == ["00", "01", "02", "02"]
    assert table.column("LANP")[2] == ""  # blank stays the empty string
    assert table.row(6)["OCCP"] == "9920"
    assert table.sources == (a, b)


def test_missing_column_names_the_file(tmp_path: Path, dictionary_path: Path) -> None:
    path = fx.write_zip(
        tmp_path / "csv_pxa.zip", "psam_p98.csv", fx.csv_text(fx.HOUSEHOLDS_A, drop="PWGTP")
    )
    with pytest.raises(MissingColumnError) as error:
        read_persons([path], read_dictionary(dictionary_path))
    assert error.value.column == "PWGTP"
    assert error.value.path == f"{path}!psam_p98.csv"
    assert "line 1" in str(error.value)


def test_code_missing_from_dictionary_names_file_and_line(
    tmp_path: Path, dictionary_path: Path
) -> None:
    persons = list(fx.HOUSEHOLDS_A)
    persons[2] = {**persons[2], "ANC1P": "555"}
    path = fx.write_zip(tmp_path / "csv_pxa.zip", "psam_p98.csv", fx.csv_text(persons))
    with pytest.raises(UnknownCodeError) as error:
        read_persons([path], read_dictionary(dictionary_path))
    assert (error.value.variable, error.value.code) == ("ANC1P", "555")
    assert error.value.data_path == f"{path}!psam_p98.csv"
    assert error.value.line == 4  # header, then persons 1 and 2
    assert error.value.dictionary_path == dictionary_path


def test_variable_missing_from_dictionary_fails_before_reading(
    tmp_path: Path,
) -> None:
    variables = {k: v for k, v in fx.PERSON_VARIABLES.items() if k != "DEAR"}
    dictionary = read_dictionary(fx.write_dictionary(tmp_path / "dict.csv", variables))
    path = fx.write_zip(tmp_path / "csv_pxa.zip", "psam_p98.csv", fx.csv_text(fx.HOUSEHOLDS_A))
    with pytest.raises(MissingVariableError) as error:
        read_persons([path], dictionary)
    assert error.value.variable == "DEAR"


def test_zip_must_hold_exactly_one_csv(tmp_path: Path, dictionary_path: Path) -> None:
    path = fx.write_zip(tmp_path / "csv_pxa.zip", "psam_p98.csv", fx.csv_text(fx.HOUSEHOLDS_A))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("psam_p97.csv", "RT\n")
    with pytest.raises(ZipLayoutError) as error:
        read_persons([path], read_dictionary(dictionary_path))
    assert set(error.value.members) == {"psam_p98.csv", "psam_p97.csv"}


def test_short_row_names_file_and_line(tmp_path: Path, dictionary_path: Path) -> None:
    text = fx.csv_text(fx.HOUSEHOLDS_A) + "P,1,00100\n"
    path = fx.write_zip(tmp_path / "csv_pxa.zip", "psam_p98.csv", text)
    with pytest.raises(MalformedRowError) as error:
        read_persons([path], read_dictionary(dictionary_path))
    assert error.value.line == len(fx.HOUSEHOLDS_A) + 2


def test_census_dir_without_zips_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        person_zips(tmp_path)
    with pytest.raises(InputNotFoundError):
        person_zips(tmp_path / "absent")
