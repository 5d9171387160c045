"""A full disk is an error, not a crash (issue 16): on a real 32 MB tmpfs (mounted here, as
root), a run stops with one line naming the path and exit 5, nothing torn; after the
filesystem is enlarged the same command completes every job exactly once."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, request, run_engine, simulator, write_lines


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


class SmallFs:
    """A tmpfs of its own, resized and remounted read-only by the test."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, options: str) -> None:
        done = _mount("-o", f"remount,{options}", str(self.path))
        assert done.returncode == 0, done.stderr


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    path = tmp_path / "fs"
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the issue's machines run the tests as root)")
    mounted = _mount("-t", "tmpfs", "-o", "size=32m", "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"mount is not permitted here: {mounted.stderr.strip()}")
    try:
        yield SmallFs(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def user_lines(stderr: str) -> list[str]:
    """What the engine says to the user on stderr (the log lines are JSON)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def generate_args(requests: Path, fs: SmallFs, base_url: str) -> tuple[str, ...]:
    return (
        "generate", "--requests", str(requests), "--run-dir", str(fs.path / "run"),
        "--cache", str(fs.path / "cache.sqlite"), "--base-url", base_url,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_full_disk_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, small_fs: SmallFs
) -> None:
    n = 20_000
    lines = [request(f"r{i}", f"question number {i}?") for i in range(n)]
    requests = write_lines(tmp_path / "in.jsonl", lines)  # the input is not on the small disk
    with simulator() as sim:
        args = generate_args(requests, small_fs, sim.base_url)
        full = run_engine(*args, timeout=300)
        assert full.returncode == 5, full.stdout + full.stderr
        assert "Traceback" not in full.stderr
        said = user_lines(full.stderr)
        assert len(said) == 1, said
        assert str(small_fs.path) in said[0]
        assert "no space left on device" in said[0]
        assert "run the same command" in said[0]
        # nothing torn: every line in the output files is whole and committed
        run_dir = small_fs.path / "run"
        done_before = read_jsonl(run_dir / "results.jsonl")
        assert len(done_before) < n
        assert not list(small_fs.path.rglob(".*.tmp"))

        small_fs.remount("size=256m")
        again = run_engine(*args, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
    results = Counter(line["custom_id"] for line in read_jsonl(run_dir / "results.jsonl"))
    assert results == Counter(f"r{i}" for i in range(n))
    assert not read_jsonl(run_dir / "errors.jsonl")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_disk_full_at_enqueue_or_read_only_is_one_line_and_exit_5(
    tmp_path: Path, small_fs: SmallFs
) -> None:
    lines = [request(f"r{i}", f"a rather longer question, number {i}?" * 4) for i in range(20_000)]
    requests = write_lines(tmp_path / "in.jsonl", lines)
    small_fs.remount("size=1m")  # too small for the queue itself
    with simulator() as sim:
        args = generate_args(requests, small_fs, sim.base_url)
        full = run_engine(*args, timeout=300)
        assert full.returncode == 5, full.stdout + full.stderr
        assert "Traceback" not in full.stderr
        said = user_lines(full.stderr)
        assert len(said) == 1, said
        assert str(small_fs.path / "run" / "queue.sqlite") in said[0]
        assert sim.stats()["requests_received"] == 0

        small_fs.remount("ro")
        read_only = run_engine(*args)
        assert read_only.returncode == 5, read_only.stdout + read_only.stderr
        said = user_lines(read_only.stderr)
        assert len(said) == 1, said
        assert "read-only file system" in said[0]
        assert str(small_fs.path / "run") in said[0]

        small_fs.remount("rw,size=256m")
        again = run_engine(*args, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
    results = read_jsonl(small_fs.path / "run" / "results.jsonl")
    assert Counter(line["custom_id"] for line in results) == Counter(f"r{i}" for i in range(20_000))
