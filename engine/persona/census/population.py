"""The weighted person population: PUMS persons, their household fields, raked weights.

Steps: read the data dictionary → read and check the person zips → derive HHT/HHL/FPARC
from co-resident persons → classify every person into each national margin → rake PWGTP
to the ACS 2022 national totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from engine.persona.census import margins as margin_specs
from engine.persona.census.dictionary import DataDictionary, read_dictionary
from engine.persona.census.households import derive_household_columns
from engine.persona.census.pums import DICTIONARY_NAME, PersonTable, person_zips, read_persons
from engine.persona.census.raking import FloatArray, Margin, RakingResult, rake

log = structlog.get_logger()


@dataclass(frozen=True)
class Population:
    dictionary: DataDictionary
    #: PUMS columns plus the derived HHT, HHL and FPARC.
    table: PersonTable
    specs: tuple[margin_specs.MarginSpec, ...]
    margins: tuple[Margin, ...]
    base_weights: FloatArray
    raking: RakingResult
    input_files: tuple[Path, ...]

    @property
    def weights(self) -> FloatArray:
        return self.raking.weights

    def row(self, index: int) -> dict[str, str]:
        return self.table.row(index)


def build_margins(
    table: PersonTable, national_dir: Path, specs: tuple[margin_specs.MarginSpec, ...]
) -> tuple[Margin, ...]:
    profiles = margin_specs.read_profiles(national_dir)
    return tuple(
        Margin(
            name=spec.name,
            category_names=tuple(category.name for category in spec.categories),
            categories=margin_specs.classify(spec, table.columns),
            targets=margin_specs.national_targets(spec, profiles),
        )
        for spec in specs
    )


def load_population(
    census_dir: Path,
    national_dir: Path,
    specs: tuple[margin_specs.MarginSpec, ...] = margin_specs.MARGINS,
) -> Population:
    zips = person_zips(census_dir)
    dictionary_path = census_dir / DICTIONARY_NAME
    dictionary = read_dictionary(dictionary_path)
    persons = read_persons(zips, dictionary)
    table = PersonTable({**persons.columns, **derive_household_columns(persons)}, persons.sources)
    margins = build_margins(table, national_dir, specs)
    base_weights = np.array([float(w) for w in table.column("PWGTP")], dtype=np.float64)
    raking = rake(base_weights, margins)
    log.info(
        "personas.raked",
        persons=len(table),
        iterations=raking.iterations,
        max_relative_error=raking.max_relative_error,
    )
    profiles = tuple(national_dir / name for name in margin_specs.PROFILE_FILES.values())
    return Population(
        dictionary=dictionary,
        table=table,
        specs=specs,
        margins=margins,
        base_weights=base_weights,
        raking=raking,
        input_files=(*zips, dictionary_path, *profiles),
    )
