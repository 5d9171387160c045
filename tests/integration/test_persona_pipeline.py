"""The PERSONA pipeline end to end on the simulator, plus its pure parts."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.crashpoints import ENV
from engine.persona import templates
from engine.persona.graph import PersonaGraph
from engine.persona.sampling import SamplingError, draw_pairs, per_persona_counts
from schemas.job import ClaimedJob
from tests.helpers import read_jsonl, run_engine, simulator
from workers.client import CallResult
from workers.errors import InvalidOutput

SMALL = ("--personas", "20", "--prompts-per-persona", "10")


def _generate(
    run_dir: Path, base_url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_engine(
        "generate", *SMALL, "--run-dir", str(run_dir), "--base-url", base_url,
        "--concurrency", "16", *extra, env=env,
    )  # fmt: skip


def test_small_run_exports_pairs_with_one_answer_per_distinct_prompt(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with simulator() as sim:
        out = _generate(run_dir, sim.base_url)
        assert out.returncode == 0, out.stderr
        stats = sim.stats()
        events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
        phases = [(e["event"], e["phase"]) for e in events if e["event"].startswith("phase.")]
        assert phases == [
            ("phase.started", "enqueue"),
            ("phase.finished", "enqueue"),
            ("phase.started", "export"),
            ("phase.finished", "export"),
        ]
        assert [e["phase"] for e in events if e["event"] == "run.finished"] == ["run"]
        again = _generate(run_dir, sim.base_url)
        assert again.returncode == 0, again.stderr
        assert "already complete" in again.stdout
        assert sim.stats()["completions_served"] == stats["completions_served"]
    # by default: the three views as Parquet, no JSONL views, no line per call
    written = {p.name for p in run_dir.iterdir()}
    assert {"pairs.parquet", "pairs.dpo.parquet", "pairs.release.parquet"} <= written
    assert not written & {"pairs.jsonl", "pairs.dpo.jsonl", "pairs.release.jsonl", "results.jsonl"}
    exported = run_engine("export", "--run-dir", str(run_dir), "--format", "pairs,dpo,release")
    assert exported.returncode == 0, exported.stderr
    assert "exported 200 pairs" in exported.stdout
    pairs = read_jsonl(run_dir / "pairs.jsonl")
    assert pq.read_table(run_dir / "pairs.parquet").to_pylist() == pairs
    assert len(pairs) == 200
    assert len({(p["persona_id"], p["prompt_id"]) for p in pairs}) == 200
    distinct_prompts = {p["prompt_id"] for p in pairs}
    assert stats["by_stage"] == {"answer": len(distinct_prompts), "critique": 200, "revise": 200}
    assert {p["split"] for p in pairs} == {"train", "test_seen", "test_unseen"}
    per_persona = {p["persona_id"] for p in pairs}
    assert len(per_persona) == 20
    for pair in pairs:
        assert pair["rejected"]
        assert pair["chosen"]
        assert pair["critique"].startswith("EVALUATION:")
        assert "DONE" not in pair["chosen"]
        assert pair["persona"].startswith("age: ")
        assert pair["prompt"].endswith("?")
        assert pair["cost_usd"] > 0
    shared = {p["prompt_id"]: p["answer_call"]["shared_by"] for p in pairs}
    counts = {q: sum(p["prompt_id"] == q for p in pairs) for q in distinct_prompts}
    assert shared == counts
    dpo = read_jsonl(run_dir / "pairs.dpo.jsonl")
    assert len(dpo) == 200
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in dpo)
    assert all(r["chosen"] != r["rejected"] and "age: " in r["prompt"] for r in dpo)
    assert pq.read_table(run_dir / "pairs.dpo.parquet").to_pylist() == dpo
    release = read_jsonl(run_dir / "pairs.release.jsonl")
    assert set(release[0]) == {
        "persona",
        "instruction",
        "original",
        "critique",
        "data",
        "question type",
    }
    table = pq.read_table(run_dir / "pairs.release.parquet")
    assert table.column_names == list(release[0])
    assert table.num_rows == 200
    assert table.to_pylist() == release
    # min/max statistics for the short columns only (a text column's would keep two whole
    # texts per row group in the writer's memory until it closes)
    columns = pq.ParquetFile(run_dir / "pairs.parquet").metadata.row_group(0)
    stats = {columns.column(i).path_in_schema: columns.column(i).statistics
             for i in range(columns.num_columns)}  # fmt: skip
    assert [stats[c] is None for c in ("persona_id", "split", "persona", "chosen")] == [
        False, False, True, True,
    ]  # fmt: skip


def test_export_formats_are_checked_against_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with simulator() as sim:
        out = _generate(run_dir, sim.base_url, "--export-format", "pairs,results")
        assert out.returncode == 0, out.stderr
    assert len(read_jsonl(run_dir / "pairs.jsonl")) == 200
    assert len(read_jsonl(run_dir / "results.jsonl")) == 400 + len(
        {p["prompt_id"] for p in read_jsonl(run_dir / "pairs.jsonl")}
    )
    assert not (run_dir / "pairs.parquet").exists()
    bad = run_engine("export", "--run-dir", str(run_dir), "--format", "parquet,csv")
    assert bad.returncode == 2
    assert "--format csv" in bad.stderr
    assert "parquet" in bad.stderr
    requests = run_engine("generate", "--requests", "x.jsonl", "--export-format", "dpo")
    assert requests.returncode == 2
    assert "--export-format dpo" in requests.stderr


def test_crash_between_stages_loses_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with simulator("--latency-ms", "5") as sim:
        crashed = _generate(run_dir, sim.base_url, env={ENV: "after_append:6"})
        assert crashed.returncode == -signal.SIGKILL
        resumed = _generate(run_dir, sim.base_url, "--export-format", "pairs,results")
        assert resumed.returncode == 0, resumed.stderr
        stats = sim.stats()
    pairs = read_jsonl(run_dir / "pairs.jsonl")
    assert len(pairs) == 200
    results = read_jsonl(run_dir / "results.jsonl")
    ids = [r["custom_id"] for r in results]
    assert len(ids) == len(set(ids)) == 200 * 2 + len({p["prompt_id"] for p in pairs})
    assert stats["duplicate_completions"] <= 32


def test_other_settings_on_the_same_run_dir_are_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with simulator() as sim:
        assert _generate(run_dir, sim.base_url).returncode == 0
        changed = _generate(run_dir, sim.base_url, "--temperature", "0.1")
    assert changed.returncode == 2
    assert "new --run-dir" in changed.stderr


def test_bad_persona_file_names_file_and_line(tmp_path: Path) -> None:
    personas = tmp_path / "personas.jsonl"
    good = {"id": "p1", "attributes": {"age": "30"}, "text": "age: 30"}
    personas.write_text(json.dumps(good) + "\n" + '{"id": "p2", "attributes": 5}\n')
    out = run_engine("generate", "--personas-file", str(personas), "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2
    assert f"{personas}:2:" in out.stderr
    with_missing = tmp_path / "missing.jsonl"
    with_missing.write_text(json.dumps({"id": "p1", "attributes": {}}) + "\n")
    out = run_engine(
        "generate", "--personas-file", str(with_missing), "--run-dir", str(tmp_path / "s")
    )
    assert out.returncode == 2
    assert f"{with_missing}:1:" in out.stderr
    assert "text" in out.stderr


def test_per_persona_counts_follow_the_paper() -> None:
    assert per_persona_counts(200) == (100, 50, 50)
    assert per_persona_counts(10) == (5, 3, 2)
    assert sum(per_persona_counts(7)) == 7
    with pytest.raises(SamplingError):
        per_persona_counts(0)


def test_draw_pairs_is_deterministic_and_disjoint() -> None:
    train = [f"t{i}" for i in range(300)]
    heldout = [f"h{i}" for i in range(100)]
    first = list(draw_pairs(["a", "b"], train, heldout, 200, seed=1))
    assert first == list(draw_pairs(["a", "b"], train, heldout, 200, seed=1))
    assert list(draw_pairs(["b"], train, heldout, 200, seed=1)) == first[200:]
    for persona in ("a", "b"):
        mine = [p for p in first if p.persona_id == persona]
        assert len({p.prompt_id for p in mine}) == 200
        assert all((p.split == "test_unseen") == p.prompt_id.startswith("h") for p in mine)
    with pytest.raises(SamplingError, match="need"):
        list(draw_pairs(["a"], train[:10], heldout, 200, seed=1))


def test_output_formats_are_parsed_and_checked() -> None:
    critique = "EVALUATION: too long. SUGGESTIONS: be brief. DONE"
    assert templates.parse_critique(critique) == "EVALUATION: too long.\nSUGGESTIONS: be brief."
    assert templates.parse_revision("REVISED PREFERENCE: Short answer. DONE") == "Short answer."
    for bad in ("EVALUATION: fine", "SUGGESTIONS: x DONE"):
        with pytest.raises(templates.MissingMarkers):
            templates.parse_critique(bad)
    with pytest.raises(templates.MissingMarkers):
        templates.parse_revision("REVISED PREFERENCE: DONE")
    body = json.dumps(
        {"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": "no"}}]}
    ).encode()
    job = ClaimedJob(1, "critique:p:q", "critique", 0, "fp", b"{}")
    with pytest.raises(InvalidOutput) as info:
        PersonaGraph.validate(job, CallResult(200, body, "r", 1, 1, 1.0))
    assert info.value.body == "no"  # the raw text is kept
