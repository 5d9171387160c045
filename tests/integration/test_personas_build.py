"""The `personas` subcommand end to end on the tmp_path fixture: output, meta, determinism."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pytest

from engine.persona.census.cli import DATA_DIR_ENV, PUMS_URL, add_parsers
from engine.persona.census.errors import NationalTableError
from engine.persona.census.national import read_profile
from schemas.persona import ATTRIBUTE_NAMES, Persona, persona_decoder, render_text
from tests import personas_fixture as fx


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="engine")
    add_parsers(parser.add_subparsers(required=True))
    args = parser.parse_args(["personas", *argv])
    code = args.func(args)
    assert isinstance(code, int)
    return code


@pytest.fixture
def census(tmp_path: Path) -> tuple[Path, Path]:
    return fx.write_census(tmp_path / "data")


def read_personas(path: Path) -> list[Persona]:
    return [persona_decoder.decode(line) for line in path.read_bytes().splitlines()]


def build(census: tuple[Path, Path], out: Path, n: int = 15, seed: int = 0) -> list[Persona]:
    census_dir, national_dir = census
    argv = ["--n", str(n), "--seed", str(seed), "--census-dir", str(census_dir)]
    assert run(*argv, "--national-dir", str(national_dir), "--out", str(out)) == 0
    return read_personas(out)


def test_every_fixture_person_becomes_one_persona(
    census: tuple[Path, Path], tmp_path: Path
) -> None:
    personas = build(census, tmp_path / "out" / "personas.jsonl")
    assert [p.id for p in personas] == [f"p{i:04d}" for i in range(15)]
    drawn = Counter((p.attributes["age"], p.attributes["sex"]) for p in personas)
    expected = Counter((r["AGEP"], {"1": "Male", "2": "Female"}[r["SEX"]]) for r in fx.ALL_PERSONS)
    assert drawn == expected
    for persona in personas:
        names = list(persona.attributes)
        assert names == [name for name in ATTRIBUTE_NAMES if name in persona.attributes]
        assert persona.text == render_text(persona.attributes)
        assert persona.text.startswith(f"age: {persona.attributes['age']}\nsex: ")


def test_personas_respect_age_and_census_rules(census: tuple[Path, Path], tmp_path: Path) -> None:
    by_age = {p.attributes["age"]: p.attributes for p in build(census, tmp_path / "p.jsonl")}
    toddler, carpenter, roommate = by_age["3"], by_age["45"], by_age["28"]
    assert set(toddler) >= {"race", "education", "household type", "religion", "mannerisms"}
    for absent in (
        "income",
        "ideology",
        "political views",
        "occupation category",
        "big five scores",
    ):
        assert absent not in toddler
    assert toddler["family presence and age"] == (
        "With related children under 5 years and 5 to 17 years"
    )
    assert carpenter["occupation category"] == "CON-Carpenters"
    assert carpenter["detailed job description"].startswith("Self-employed, works in construction")
    assert {"ideology", "political views", "big five scores"} <= set(carpenter)
    assert "detailed job description" not in roommate  # unemployed
    assert roommate["household language"] == "Asian and Pacific Island languages"


def test_meta_records_paths_relative_to_its_directory(
    census: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "built" / "personas.jsonl"
    build(census, out)
    meta_text = (tmp_path / "built" / "personas.meta.json").read_text()
    assert str(tmp_path) not in meta_text  # no machine-specific absolute path anywhere
    command = json.loads(meta_text)["command"]
    words = command.split()
    census_rel = words[words.index("--census-dir") + 1]
    national_rel = words[words.index("--national-dir") + 1]
    assert words[words.index("--out") + 1] == "personas.jsonl"
    assert (out.parent / census_rel).resolve() == census[0].resolve()
    assert (out.parent / national_rel).resolve() == census[1].resolve()


def test_the_shipped_meta_names_no_absolute_path() -> None:
    shipped = Path(__file__).parents[2] / "engine" / "data" / "personas.meta.json"
    command = json.loads(shipped.read_text())["command"].split()
    for flag in ("--census-dir", "--national-dir", "--out"):
        assert not Path(command[command.index(flag) + 1]).is_absolute()


def test_meta_describes_the_build(census: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "personas.jsonl"
    build(census, out, seed=7)
    meta = json.loads((tmp_path / "personas.meta.json").read_text())
    assert meta["seed"] == 7
    assert meta["n"] == 15
    assert "--seed 7" in meta["command"]
    assert [entry["name"] for entry in meta["inputs"]] == [
        "csv_pxa.zip",
        "csv_pxb.zip",
        "PUMS_Data_Dictionary_2018.csv",
        "ACSDP1Y2022.DP02.csv",
        "ACSDP1Y2022.DP05.csv",
    ]
    sizes = {entry["name"]: entry["size_bytes"] for entry in meta["inputs"]}
    assert sizes["csv_pxa.zip"] == (census[0] / "csv_pxa.zip").stat().st_size
    assert meta["counts"]["persons_read"] == 15
    assert meta["counts"]["households_and_group_quarters"] == 7
    assert meta["counts"]["attributes_present"]["age"] == 15
    assert meta["counts"]["attributes_present"]["political views"] == 12  # persons 18+
    for row in meta["marginals"]:
        assert row["raked_pct"] == pytest.approx(row["acs_2022_pct"], abs=0.01)
        # all 15 persons drawn: persona shares are the unweighted fixture shares = ACS shares
        assert row["diff_pp"] == pytest.approx(0.0, abs=0.01)


def test_same_seed_gives_identical_files_and_another_seed_does_not(
    census: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "personas.jsonl"
    meta = tmp_path / "personas.meta.json"
    build(census, out, n=10, seed=3)
    first = (out.read_bytes(), meta.read_bytes())
    build(census, out, n=10, seed=3)
    assert (out.read_bytes(), meta.read_bytes()) == first
    build(census, out, n=10, seed=4)
    assert out.read_bytes() != first[0]


def test_report_prints_marginals_against_acs(
    census: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    census_dir, national_dir = census
    code = run(
        "--n",
        "15",
        "--seed",
        "0",
        "--census-dir",
        str(census_dir),
        "--national-dir",
        str(national_dir),
        "--out",
        str(tmp_path / "p.jsonl"),
        "--report",
    )
    assert code == 0
    output = capsys.readouterr().out
    assert "Hispanic or Latino (any race)" in output
    assert "Graduate or professional degree" in output
    assert "max |diff| over checked margins" in output


def test_census_dir_defaults_to_the_environment(
    census: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(census[0]))
    out = tmp_path / "p.jsonl"
    assert run("--n", "5", "--seed", "0", "--out", str(out)) == 0  # national dir: sibling
    assert len(read_personas(out)) == 5


def test_without_census_dir_the_error_says_where_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert run("--n", "5", "--seed", "0", "--out", str(tmp_path / "p.jsonl")) == 2
    assert PUMS_URL in capsys.readouterr().err
    assert (
        run(
            "--n",
            "5",
            "--seed",
            "0",
            "--census-dir",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "p.jsonl"),
        )
        == 2
    )
    error = capsys.readouterr().err
    assert "census directory not found" in error
    assert PUMS_URL in error
    assert not (tmp_path / "p.jsonl").exists()


def test_input_errors_exit_2_and_name_the_file(
    census: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    census_dir, _ = census
    out = tmp_path / "p.jsonl"
    argv = ["--n", "5", "--seed", "0", "--census-dir", str(census_dir), "--out", str(out)]
    assert run(*argv, "--national-dir", str(tmp_path)) == 2
    missing = tmp_path / "ACSDP1Y2022.DP02.csv"
    assert f"ACS national Data Profile not found: {missing}" in capsys.readouterr().err
    broken = fx.csv_text(fx.HOUSEHOLDS_B, drop="HICOV")
    fx.write_zip(census_dir / "csv_pxb.zip", "psam_p99.csv", broken)
    assert run(*argv) == 2
    error = capsys.readouterr().err
    assert "csv_pxb.zip!psam_p99.csv: line 1 (header) has no column 'HICOV'" in error
    assert not out.exists()


def test_more_personas_than_persons_is_an_input_error(
    census: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    census_dir, national_dir = census
    code = run(
        "--n",
        "16",
        "--seed",
        "0",
        "--census-dir",
        str(census_dir),
        "--national-dir",
        str(national_dir),
        "--out",
        str(tmp_path / "p.jsonl"),
    )
    assert code == 2
    assert "cannot draw 16 distinct persons: 15 have a positive weight" in capsys.readouterr().err


def test_profile_rows_are_found_by_label_path(census: tuple[Path, Path]) -> None:
    profile = read_profile(census[1] / "ACSDP1Y2022.DP05.csv")
    assert profile.estimate(("SEX AND AGE", "Total population", "Male")) == 800_000
    assert (
        profile.estimate(("SEX AND AGE", "Total population", "18 years and over", "Male"))
        == 9_900_000
    )
    with pytest.raises(NationalTableError) as error:
        profile.estimate(("RACE", "Total population", "Martian"))
    assert error.value.reason == "not found"
