"""`python -m bench plot RUN_DIR`: report.png drawn again from a stored run (the unit
tests' fixture, a real run's report.json and latency.json), and a bad latency file refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, engine_env

FIXTURE = ROOT / "tests" / "unit" / "data" / "bench_overhead"


def _plot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "plot", *args],
        cwd=ROOT, env=engine_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_plot_command_draws_from_a_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    done = _plot(str(run_dir))
    assert done.returncode == 0, done.stderr
    assert (run_dir / "report.png").read_bytes().startswith(b"\x89PNG")
    (run_dir / "latency.json").write_text("{not json")
    bad = _plot(str(run_dir))
    assert bad.returncode == 2
    assert f"{run_dir / 'latency.json'}: not a bench latency file" in bad.stderr


def test_plot_command_refuses_a_directory_without_a_report(tmp_path: Path) -> None:
    done = _plot(str(tmp_path))
    assert done.returncode == 2
    assert f"{tmp_path / 'report.json'}: no such file" in done.stderr
    assert not (tmp_path / "report.png").exists()
