"""`evaluate --mode all --n 40 --k 4` end to end against the simulator (subprocesses), killed
once by SIGKILL at a crash point (the 12th batch of results written, not yet committed) and
resumed with the same command: every judge job is done once, every sample is scored once per
mode and draw, and the calls paid twice are bounded by those the kill caught in flight."""

from __future__ import annotations

import collections
import json
import signal
from pathlib import Path

from engine.crashpoints import ENV
from engine.evaluation.report import SIMULATED_NOTE
from engine.evaluation.templates import MODES
from tests.helpers import run_engine, simulator

N, K, CONCURRENCY = 40, 4, 8
JUDGES = len(MODES) * N * K


def test_evaluate_killed_then_resumed_scores_every_sample_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with simulator("--latency-ms", "2", "--pass-rate", "0.4") as sim:
        args = (
            "evaluate", "--mode", "all", "--n", str(N), "--k", str(K), "--seed", "3",
            "--run-dir", str(run_dir), "--base-url", sim.base_url, "--judge-model", "sim-judge",
            "--concurrency", str(CONCURRENCY), "--cache", str(tmp_path / "cache.sqlite"),
        )  # fmt: skip
        crashed = run_engine(*args, env={ENV: "after_append:12"})
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        assert not (run_dir / "report.json").exists()
        resumed = run_engine(*args, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        stats = sim.stats()

    lines = (run_dir / "results.jsonl").read_bytes().splitlines()
    ids = collections.Counter(json.loads(line)["custom_id"] for line in lines)
    judge_ids = [i for i in ids if i.startswith("judge:")]
    assert len(judge_ids) == JUDGES
    assert set(ids.values()) == {1}  # each job's result written once
    judge_calls = sum(n for stage, n in stats["by_stage"].items() if stage.startswith("judge."))
    # the judge calls caught in flight or answered but uncommitted at the kill are paid again
    assert JUDGES <= judge_calls <= JUDGES + 3 * CONCURRENCY

    report = json.loads((run_dir / "report.json").read_text())
    assert report["note"] == SIMULATED_NOTE
    assert [m["mode"] for m in report["modes"]] == list(MODES)
    for mode in report["modes"]:
        assert mode["scored"] == N
        assert len(mode["pass_at_k"]) == K
        assert mode["pass_at_k"] == sorted(mode["pass_at_k"])
        assert mode["usage"]["calls"] == 2 * N * K
    assert len(report["comparisons"]) == 6
    assert SIMULATED_NOTE in (run_dir / "report.md").read_text()


def test_loo_and_verify_killed_then_resumed_label_every_item_once(tmp_path: Path) -> None:
    gen, loo_dir = tmp_path / "gen", tmp_path / "loo"
    with simulator("--latency-ms", "2") as sim:
        common = ("--base-url", sim.base_url, "--concurrency", str(CONCURRENCY), "--no-cache")
        generated = run_engine("generate", "--personas", "8", "--prompts-per-persona", "8",
                               "--run-dir", str(gen), *common)  # fmt: skip
        assert generated.returncode == 0, generated.stderr
        verify_args = ("verify", "--run-dir", str(gen), "--n", "50", *common)
        loo_args = ("evaluate", "loo", "--attributes", "age,sex", "--n", "30",
                    "--run-dir", str(loo_dir), *common)  # fmt: skip
        for args in (verify_args, loo_args):
            crashed = run_engine(*args, env={ENV: "after_append:3"})
            assert crashed.returncode == -signal.SIGKILL, crashed.stderr
            resumed = run_engine(*args)
            assert resumed.returncode == 0, resumed.stderr

    labels = (gen / "verify" / "verify.labels.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in labels]
    assert len(ids) == len(set(ids)) == 50
    verify_report = json.loads((gen / "verify" / "verify.report.json").read_text())
    assert verify_report["judged"] == 50
    assert 0.0 <= verify_report["position_bias"] <= 1.0
    assert verify_report["note"] == SIMULATED_NOTE
    loo_report = json.loads((loo_dir / "report.json").read_text())
    assert [r["attribute"] for r in loo_report["loo"]] == ["age", "sex"]
    assert {r["agreement"]["n"] for r in loo_report["loo"]} == {30}
    assert loo_report["modes"][0]["scored"] == 30
