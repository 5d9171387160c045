"""`study create`, `study export`, `study report` and `agree` as subprocesses on real files:
what they print and write, and the errors (exit 2, the file or flag named, nothing written)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from engine.study import report, store, tally
from tests.helpers import read_jsonl, run_engine
from tests.study_support import create_study, links, write_pairs

PERSONAS, QUESTIONS, RATERS = 2, 3, 3
# per item number (1-based), the three raters' choices as A/B/cant_tell
CHOICES: dict[int, list[store.Choice]] = {
    1: ["A", "A", "A"],
    2: ["A", "B", "B"],
    3: ["A", "B", "cant_tell"],  # a tie
}


def _create(tmp_path: Path) -> Path:
    write_pairs(tmp_path / "run", 4, 5)
    study = tmp_path / "study"
    result = run_engine(
        "study", "create", "--run-dir", str(tmp_path / "run"), "--out", str(study),
        "--personas", str(PERSONAS), "--questions", str(QUESTIONS),
        "--raters-per-persona", str(RATERS), "--seed", "4", "--base-url", "https://example.test/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{PERSONAS * QUESTIONS} items, {PERSONAS * RATERS} rater seats" in result.stdout
    assert "organiser page: https://example.test/o/" in result.stdout
    return study


def _answer_all(study: Path) -> None:
    """Every seat answers as CHOICES says, through the server's store (a real SQLite file)."""

    async def answer() -> None:
        answers = await store.AnswerStore.open(study)
        try:
            for n, seat in enumerate(links(study)):
                for number, choices in CHOICES.items():
                    choice = choices[n % RATERS]
                    await answers.save(seat["seat"], number - 1, choice, "why", "text")
        finally:
            await answers.close()

    asyncio.run(answer())


def test_create_export_report_and_agree(tmp_path: Path) -> None:
    study = _create(tmp_path)
    seats = links(study)
    assert all(s["url"] == "https://example.test" + s["path"] for s in seats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "study"]  # no leftovers
    _answer_all(study)

    exported = run_engine("study", "export", str(study), "--out", str(tmp_path / "human.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert "18 answers; 4 items with a majority (2 unanimous), 2 ties, 0 can't tell" in (
        exported.stdout
    )
    majority = read_jsonl(tmp_path / "human.jsonl")
    assert len(majority) == 4
    assert len(read_jsonl(tmp_path / "human.unresolved.jsonl")) == 2
    assert len(read_jsonl(tmp_path / "human.raters.jsonl")) == 18

    # one model that agrees with the majority on every item, one that never does
    agreeing, contrary = tmp_path / "agreeing.jsonl", tmp_path / "contrary.jsonl"
    flip = {"revision": "original", "original": "revision"}
    agreeing.write_text("".join(json.dumps({"id": m["id"], "label": m["label"]}) + "\n"
                                for m in majority))  # fmt: skip
    contrary.write_text("".join(json.dumps({"id": m["id"], "label": flip[m["label"]]}) + "\n"
                                for m in majority))  # fmt: skip
    agreed = run_engine("agree", str(tmp_path / "human.jsonl"), str(agreeing), "--json")
    assert agreed.returncode == 0, agreed.stderr
    assert json.loads(agreed.stdout)["agreement"] == 1.0

    reported = run_engine(
        "study", "report", str(study), "--model", f"good={agreeing}", "--model", str(contrary),
        "--out-dir", str(tmp_path / "report"),
    )  # fmt: skip
    assert reported.returncode == 0, reported.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["good", tmp_path.name]
    assert report["models"][0]["agreement"]["agreement"] == 1.0
    assert report["models"][1]["agreement"]["agreement"] == 0.0
    assert (report["majority"], report["ties"], report["answers"]) == (4, 2, 18)
    expected = tally.fleiss_kappa(
        list(tally.tally(store.load(study), store.read_answers(study)).votes.values())
    )
    assert expected is not None
    assert report["fleiss"]["kappa"] == expected.kappa
    assert f"Fleiss' kappa among raters: {expected.kappa:.3f}" in reported.stdout
    assert (tmp_path / "report" / "report.png").read_bytes().startswith(b"\x89PNG")
    assert "| good | 4 | 1.000 |" in (tmp_path / "report" / "report.md").read_text()


def test_errors_name_the_file_or_flag_and_write_nothing(tmp_path: Path) -> None:
    study = _create(tmp_path)
    again = run_engine("study", "create", "--run-dir", str(tmp_path / "run"), "--out", str(study))
    assert again.returncode == 2
    assert f"--out {study}: holds a study" in again.stderr
    too_many = run_engine("study", "create", "--run-dir", str(tmp_path / "run"),
                          "--out", str(tmp_path / "new"), "--personas", "9")  # fmt: skip
    assert too_many.returncode == 2
    assert "--personas 9 --questions 10: the run has only 0 personas" in too_many.stderr
    not_run = run_engine("study", "create", "--run-dir", str(tmp_path), "--out",
                         str(tmp_path / "new"))  # fmt: skip
    assert not_run.returncode == 2
    assert f"{tmp_path / 'pairs.jsonl'}: not a finished generation run" in not_run.stderr
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "study"]

    not_study = run_engine("study", "export", str(tmp_path / "run"))
    assert not_study.returncode == 2
    assert "study.sqlite: not a study folder" in not_study.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "label": "revision"}\nnot json\n')
    _answer_all(study)
    reported = run_engine("study", "report", str(study), "--model", f"m={bad}")
    assert reported.returncode == 2
    assert f"{bad}:2: not a label line" in reported.stderr
    assert not (study / "report.md").exists()
    bad.write_text('{"id": "x", "label": "revision"}\n')
    unrelated = run_engine("study", "report", str(study), "--model", f"m={bad}")
    assert unrelated.returncode == 2
    assert "no item in common" in unrelated.stderr

    not_served = run_engine("study", "serve", str(tmp_path / "run"), "--port", "0")
    assert not_served.returncode == 2
    assert "study.sqlite: not a study folder" in not_served.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_engine("study", "serve", str(study), "--port", port)
    assert busy.returncode == 2
    assert f"error: --host 127.0.0.1 --port {port}: " in busy.stderr


def test_a_report_before_any_answer_says_so(tmp_path: Path) -> None:
    """In this process (warnings are errors: matplotlib's layout must not complain either)."""
    write_pairs(tmp_path / "run", 2, 2)
    study = create_study(tmp_path / "run", tmp_path / "study", personas=2, questions=2)
    result = report.build(store.load(study), store.read_answers(study), [], seed=0)
    assert (result.answers, result.unanswered, result.fleiss) == (0, 4, None)
    paths = report.write(result, tmp_path / "out")
    assert [p.name for p in paths] == ["report.json", "report.md", "report.png"]
    assert "no item has two answers yet" in paths[1].read_text()
    assert paths[2].read_bytes().startswith(b"\x89PNG")
