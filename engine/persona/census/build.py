"""Build personas: load the weighted population → draw n persons → decode and enrich → write.

Determinism: persons are drawn with numpy's PCG64 generator seeded with `seed` (weighted by
the raked weights, without replacement, so no person appears twice); persona i's procedural
attributes come from `random.Random(f"{seed}:{i}")`. The same inputs, seed, n and library
versions give byte-identical output files; the meta file holds no timestamps.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import structlog

from engine.persona.census.attributes import census_attributes
from engine.persona.census.errors import SampleSizeError
from engine.persona.census.population import Population, load_population
from engine.persona.census.procedural import person_context, procedural_attributes
from engine.persona.census.raking import FloatArray
from engine.persona.census.report import MarginalRow, marginal_rows
from schemas.persona import ATTRIBUTE_NAMES, Persona, make_persona, persona_encoder

log = structlog.get_logger()

META_SUFFIX = ".meta.json"


class BuildConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to build: `n` personas with `seed`, from the two input directories."""

    n: int
    seed: int
    census_dir: Path
    national_dir: Path


@dataclass(frozen=True)
class BuildResult:
    population: Population
    sample: npt.NDArray[np.int64]
    personas: tuple[Persona, ...]
    marginals: tuple[MarginalRow, ...]


def sample_indices(weights: FloatArray, n: int, seed: int) -> npt.NDArray[np.int64]:
    """n distinct person indices drawn with probability proportional to `weights`."""
    available = int(np.count_nonzero(weights > 0))
    if not 0 < n <= available:
        raise SampleSizeError(n, available)
    generator = np.random.Generator(np.random.PCG64(seed))
    chosen = generator.choice(len(weights), size=n, replace=False, p=weights / weights.sum())
    return np.asarray(chosen, dtype=np.int64)


def persona_id(index: int, n: int) -> str:
    return f"p{index:0{max(4, len(str(n - 1)))}d}"


def make_personas(
    population: Population, sample: npt.NDArray[np.int64], seed: int
) -> tuple[Persona, ...]:
    personas = []
    for position, person in enumerate(sample.tolist()):
        row = population.row(person)
        attributes = census_attributes(population.dictionary, row)
        rng = random.Random(f"{seed}:{position}")
        attributes.update(procedural_attributes(rng, person_context(row, attributes)))
        personas.append(make_persona(persona_id(position, len(sample)), attributes))
    return tuple(personas)


def build(config: BuildConfig) -> BuildResult:
    population = load_population(config.census_dir, config.national_dir)
    sample = sample_indices(population.weights, config.n, config.seed)
    personas = make_personas(population, sample, config.seed)
    checked = [spec.checked for spec in population.specs]
    rows = marginal_rows(population.margins, checked, population.weights, sample)
    log.info("personas.built", personas=len(personas))
    return BuildResult(population, sample, personas, tuple(rows))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a sibling temporary file, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def write_jsonl(personas: Sequence[Persona], path: Path) -> None:
    _write_atomically(path, b"".join(persona_encoder.encode(p) + b"\n" for p in personas))


def meta_path(out_path: Path) -> Path:
    """`personas.jsonl` → `personas.meta.json`."""
    return out_path.with_name(out_path.name.removesuffix(".jsonl") + META_SUFFIX)


def _file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"name": path.name, "size_bytes": path.stat().st_size, "sha256": digest}


def build_meta(config: BuildConfig, result: BuildResult, command: str) -> dict[str, Any]:
    """Deterministic description of a build: no timestamps, no absolute paths (`command`'s
    paths are relative to the meta file's directory)."""
    population = result.population
    present = Counter(name for persona in result.personas for name in persona.attributes)
    serials = population.table.column("SERIALNO")
    return {
        "command": command,
        "seed": config.seed,
        "n": config.n,
        "sampling": "numpy PCG64, weighted by raked PWGTP, without replacement",
        "numpy_version": np.__version__,
        "inputs": [_file_entry(path) for path in population.input_files],
        "counts": {
            "persons_read": len(population.table),
            "households_and_group_quarters": len(set(serials)),
            "personas": len(result.personas),
            "attributes_present": {name: present[name] for name in ATTRIBUTE_NAMES},
        },
        "raking": {
            "margins": [margin.name for margin in population.margins],
            "iterations": population.raking.iterations,
            "max_relative_error": float(f"{population.raking.max_relative_error:.1g}"),
            "base_weight_total": float(population.base_weights.sum()),
            "raked_weight_total": round(float(population.weights.sum())),
        },
        "marginals": [msgspec.to_builtins(row) for row in result.marginals],
    }


def write_meta(meta: dict[str, Any], path: Path) -> None:
    _write_atomically(path, msgspec.json.format(msgspec.json.encode(meta), indent=2) + b"\n")
