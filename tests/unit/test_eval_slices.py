"""--where clauses (engine.evaluation.slices) and the report's slices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import SettingsError
from engine.evaluation.pipeline import EvaluatePipeline
from engine.evaluation.report import write_reports
from engine.evaluation.samples import EvalSettings
from engine.evaluation.slices import check_not_empty, parse_clause, slices_of
from engine.queue.memory import MemoryQueue

PERSON = {"age": "25", "sex": "Female", "income": "$53,694"}


def test_clauses_match_values_and_numeric_ranges() -> None:
    assert parse_clause("sex=female").matches(PERSON)
    assert not parse_clause("sex=Male").matches(PERSON)
    assert parse_clause("age=18-29").matches(PERSON)
    assert not parse_clause("age=30-39").matches(PERSON)
    assert parse_clause("income=50000-60000").matches(PERSON)
    assert not parse_clause("religion=None").matches(PERSON)  # absent: not in the slice


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sex", "write attribute=value"),
        ("colour=red", "unknown attribute 'colour'"),
        ("age=", "write attribute=value"),
    ],
)
def test_bad_clauses_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"--where.*{message}"):
        parse_clause(text)


def test_slices_are_each_clause_then_all_and_must_not_be_empty() -> None:
    a, b = parse_clause("sex=Female"), parse_clause("age=30-39")
    assert slices_of([a, b]) == [(a,), (b,), (a, b)]
    assert slices_of([a]) == [(a,)]
    with pytest.raises(SettingsError, match="no sample falls in the slice age=30-39"):
        check_not_empty([a, b], [PERSON])


async def test_the_report_has_a_row_per_slice(tmp_path: Path) -> None:
    queue = MemoryQueue()
    where = (parse_clause("sex=Female"), parse_clause("age=0-200"))
    pipeline = EvaluatePipeline(EvalSettings(n=30, modes=("baseline",)), where=where)
    await pipeline.prepare(queue)
    await write_reports(pipeline, queue, tmp_path, {})
    report = json.loads((tmp_path / "report.json").read_text())
    sizes = {s["slice"]: s["size"] for s in report["slices"]}
    assert sizes["age=0-200"] == 30
    assert 0 < sizes["sex=Female"] == sizes["sex=Female and age=0-200"] < 30
    assert "| sex=Female |" in (tmp_path / "report.md").read_text()
    with pytest.raises(SettingsError, match="no sample"):
        await EvaluatePipeline(pipeline.settings, where=(parse_clause("age=0-1"),)).prepare(queue)
    await queue.close()
