"""The bench's commands as a user runs them: bad input is exit 2 naming the flag or file with
nothing enqueued; `agree --json` prints the documented keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_engine


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mode", "best"), "argument --mode: invalid choice: 'best'"),
        (("--where", "colour=red"), "--where 'colour=red': unknown attribute 'colour'"),
        (("--where", "age=150-200"), "no sample falls in the slice age=150-200"),
        (("--n", "0"), "--n"),
    ],
)
def test_bad_evaluate_input_is_exit_2_and_enqueues_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    run_dir = tmp_path / "run"
    result = run_engine("evaluate", "--n", "5", "--run-dir", str(run_dir), *args)
    assert result.returncode == 2
    assert message in result.stderr
    status = run_engine("status", "--run-dir", str(run_dir), "--json")
    if status.returncode == 0:
        assert json.loads(status.stdout)["total"] == 0


def test_loo_with_an_unknown_attribute_is_exit_2(tmp_path: Path) -> None:
    result = run_engine(
        "evaluate",
        "loo",
        "--attributes",
        "age,colour",
        "--n",
        "3",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    assert "--attributes: unknown attribute(s) 'colour'" in result.stderr


def test_agree_json_and_errors(tmp_path: Path) -> None:
    a, b, bad = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "bad.jsonl"
    a.write_text("".join(json.dumps({"id": i, "label": i % 3 == 0}) + "\n" for i in range(30)))
    b.write_text("".join(json.dumps({"id": i, "label": i % 2 == 0}) + "\n" for i in range(30)))
    bad.write_text('{"id": 1, "label": "x"}\n{"id": 2}\n')
    result = run_engine("agree", str(a), str(b), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 30
    assert {"agreement", "kappa", "kappa_low", "kappa_high", "confusion"} <= set(report)
    assert report["kappa_low"] <= report["kappa"] <= report["kappa_high"]
    failed = run_engine("agree", str(a), str(bad))
    assert failed.returncode == 2
    assert f"{bad}:2:" in failed.stderr
