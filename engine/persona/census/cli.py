"""`personas` subcommand: synthetic personas from US census microdata (ACS PUMS).

    python -m engine personas --n 1586 --seed 0 [--census-dir DIR] [--national-dir DIR]
                              --out engine/data/personas.jsonl [--report]

Writes one persona per line to `--out` and a deterministic `<name>.meta.json` next to it
(seed, input file names/sizes/hashes, command, counts, marginals). `--report` prints the
personas' marginals (sex, age groups, race/Hispanic origin, education 25+, plus the raked
nativity and language margins) next to the national ACS 2022 figures, in percentage points.

Input files (public domain, U.S. Census Bureau), read from paths and never copied:
- `--census-dir` (default: `$PERSONA_DATA_DIR`): the ACS 2018 1-year PUMS person files
  `csv_p??.zip` (one per state, e.g. `csv_pvt.zip`; `csv_pus.zip` holds the whole country)
  from https://www2.census.gov/programs-surveys/acs/data/pums/2018/1-Year/ and the data
  dictionary `PUMS_Data_Dictionary_2018.csv` from
  https://www2.census.gov/programs-surveys/acs/tech_docs/pums/data_dict/
- `--national-dir` (default: `acs_2022_national` next to the census directory): the ACS 2022
  1-year national Data Profiles DP02 and DP05 exported from data.census.gov as
  `ACSDP1Y2022.DP02.csv` and `ACSDP1Y2022.DP05.csv` (tables DP02/DP05, geography United
  States, 2022 ACS 1-Year Estimates Data Profiles, "CSV" export).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from engine.argtypes import non_negative_int, positive_int
from engine.exits import EXIT_OK, EXIT_USAGE
from engine.persona.census.build import (
    BuildConfig,
    build,
    build_meta,
    meta_path,
    write_jsonl,
    write_meta,
)
from engine.persona.census.errors import InputNotFoundError, PersonaDataError
from engine.persona.census.report import format_table

DATA_DIR_ENV = "PERSONA_DATA_DIR"
NATIONAL_DIR_NAME = "acs_2022_national"
PUMS_URL = "https://www2.census.gov/programs-surveys/acs/data/pums/2018/1-Year/"
DICTIONARY_URL = "https://www2.census.gov/programs-surveys/acs/tech_docs/pums/data_dict/"

DOWNLOAD_HINT = (
    f"the census directory must hold ACS 2018 1-year PUMS person files csv_p??.zip from "
    f"{PUMS_URL} and PUMS_Data_Dictionary_2018.csv from {DICTIONARY_URL}"
)
MISSING_CENSUS_DIR = (
    f"personas: no census directory: pass --census-dir DIR or set {DATA_DIR_ENV}; " + DOWNLOAD_HINT
)


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "personas",
        allow_abbrev=False,
        help="build synthetic personas from ACS PUMS person files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=positive_int, required=True, help="number of personas")
    parser.add_argument(
        "--seed", type=non_negative_int, required=True, help="random seed (sampling, traits)"
    )
    parser.add_argument(
        "--census-dir",
        type=Path,
        default=None,
        help=f"directory with csv_p*.zip and the data dictionary (default: ${DATA_DIR_ENV})",
    )
    parser.add_argument(
        "--national-dir",
        type=Path,
        default=None,
        help=f"ACS 2022 national Data Profiles (default: ../{NATIONAL_DIR_NAME} of --census-dir)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output JSONL file")
    parser.add_argument(
        "--report", action="store_true", help="print marginals against ACS 2022 national figures"
    )
    parser.set_defaults(func=run_personas)


def _command(args: argparse.Namespace, census_dir: Path, national_dir: Path) -> str:
    """The build command, with every path relative to the output's directory (the data
    directory that holds the meta file), so the meta file names no machine-specific path:
    run from that directory, the command rebuilds the file."""
    data_dir = Path(args.out).absolute().parent
    parts = [
        "python -m engine personas",
        f"--n {args.n}",
        f"--seed {args.seed}",
        f"--census-dir {shlex.quote(relative_to_dir(census_dir, data_dir))}",
        f"--national-dir {shlex.quote(relative_to_dir(national_dir, data_dir))}",
        f"--out {shlex.quote(Path(args.out).name)}",
    ]
    return " ".join(parts)


def relative_to_dir(path: Path, directory: Path) -> str:
    """`path` relative to `directory` (with `..` where needed), POSIX separators."""
    try:
        relative = os.path.relpath(path.absolute(), directory)
    except ValueError:  # another drive (Windows): no relative path exists
        return path.name
    return Path(relative).as_posix()


def resolve_census_dir(given: Path | None) -> Path | None:
    if given is not None:
        return given
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env) if from_env else None


def run_personas(args: argparse.Namespace) -> int:
    census_dir = resolve_census_dir(args.census_dir)
    if census_dir is None:
        print(MISSING_CENSUS_DIR, file=sys.stderr)
        return EXIT_USAGE
    national_dir = args.national_dir or census_dir.parent / NATIONAL_DIR_NAME
    config = BuildConfig(n=args.n, seed=args.seed, census_dir=census_dir, national_dir=national_dir)
    try:
        result = build(config)
    except InputNotFoundError as error:
        print(f"personas: {error}; {DOWNLOAD_HINT}", file=sys.stderr)
        return EXIT_USAGE
    except PersonaDataError as error:
        print(f"personas: {error}", file=sys.stderr)
        return EXIT_USAGE
    write_jsonl(result.personas, args.out)
    write_meta(
        build_meta(config, result, _command(args, census_dir, national_dir)), meta_path(args.out)
    )
    if args.report:
        print(format_table(result.marginals))
    return EXIT_OK
