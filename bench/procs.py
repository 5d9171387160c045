"""The measured processes: the simulator, the engine and the bare client, each a subprocess.

Nothing here imports the engine's internals: the engine is driven through its command line,
read through its output files and its `run.finished` log line, and the simulator through
`GET /stats`. Each process writes its stdout and stderr to files in the variant's directory.

Errors (all `BenchProcessError`):
    SimulatorStartError   the simulator did not print its "listening on" line
    EngineRejected        the engine exited 2: it refused the command (usage or input)
    EngineFailed          any other unexpected exit, or no `run.finished` line
    BareFailed            the bare client exited non-zero
    ProcessTimedOut       a process ran longer than the scenario allows
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from bench.bare import BareResult, bare_result_decoder
from engine.exits import EXIT_FAILED_JOBS, EXIT_OK, EXIT_USAGE

SIM_PREFIX = "simulator listening on "
OK_EXITS = frozenset({EXIT_OK, EXIT_FAILED_JOBS})
_ROOT = Path(__file__).resolve().parents[1]
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


class BenchProcessError(Exception):
    pass


class SimulatorStartError(BenchProcessError):
    def __init__(self, said: str) -> None:
        super().__init__(f"the simulator did not start (said {said!r})")
        self.said = said


class EngineRejected(BenchProcessError):
    def __init__(self, exit_code: int, stderr_tail: str) -> None:
        super().__init__(f"the engine refused the command (exit {exit_code}): {stderr_tail}")
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class EngineFailed(BenchProcessError):
    def __init__(self, exit_code: int, stderr_tail: str) -> None:
        super().__init__(f"the engine failed (exit {exit_code}): {stderr_tail}")
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class BareFailed(BenchProcessError):
    def __init__(self, exit_code: int, stderr_tail: str) -> None:
        super().__init__(f"the bare client failed (exit {exit_code}): {stderr_tail}")
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class ProcessTimedOut(BenchProcessError):
    def __init__(self, what: str, timeout_s: float) -> None:
        super().__init__(f"{what} ran longer than {timeout_s:.0f} s and was killed")
        self.what = what
        self.timeout_s = timeout_s


class RunFinished(msgspec.Struct, frozen=True):
    """The fields of the engine's `run.finished` log line the bench reads (others ignored)."""

    elapsed_s: float
    cpu_s: float
    peak_rss_mb: float
    overall_rate_per_s: float = 0.0


def clean_env() -> dict[str, str]:
    """This environment without anything that could point the engine at a real API or at a
    shared response cache."""
    drop = ("OPENAI_", "PERSONA_TESTBED_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def supported_generate_flags() -> frozenset[str]:
    """The flags `python -m engine generate --help` lists (the engine's public contract)."""
    out = subprocess.run(
        _python_m("engine", "generate", "--help"),
        cwd=_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return frozenset(_FLAG.findall(out.stdout))


class SimProcess:
    """`python -m engine simulate --port 0 ARGS`, started on entering, stopped on leaving."""

    def __init__(self, args: list[str], log_dir: Path, start_timeout_s: float = 30.0) -> None:
        self._args = args
        self._log_dir = log_dir
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def __enter__(self) -> SimProcess:
        cmd = _python_m("engine", "simulate", "--port", "0", "--parent-pid", str(os.getpid()))
        with (self._log_dir / "sim.stderr.log").open("wb") as stderr:
            self._proc = subprocess.Popen(
                [*cmd, *self._args], cwd=_ROOT, env=clean_env(), stdout=subprocess.PIPE,
                stderr=stderr,
            )  # fmt: skip
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self._start_timeout_s)
        line = self._proc.stdout.readline().decode().strip() if ready else "(nothing)"
        if not line.startswith(SIM_PREFIX):
            self.stop()
            raise SimulatorStartError(line)
        self.base_url = line.removeprefix(SIM_PREFIX)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the simulator has not started"
        return self._proc.pid

    def has_requests(self) -> bool:
        """Whether any completion request has arrived (the client's run loop has begun)."""
        return int(self.stats()["requests_received"]) > 0

    def stats(self) -> dict[str, Any]:
        root = self.base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/stats", timeout=30) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None


# Runs argv[1:] as a grandchild and passes its exit status on. Linux carries a process's RSS
# high-water mark across exec, so a child of this (large) bench process would report the
# bench's RSS as its own peak (`ru_maxrss`); a child of this ~11 MB launcher reports its own.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


class Started(msgspec.Struct, frozen=True):
    """A measured process's exit, wall time, and CPU time until `probe` first said yes."""

    exit_code: int
    wall_s: float
    startup_cpu_s: float | None


def _run_logged(
    cmd: list[str],
    log_dir: Path,
    name: str,
    timeout_s: float,
    probe: Callable[[], bool] | None = None,
) -> Started:
    """Run `cmd` (through the launcher, in its own process group) with stdout/stderr in
    `log_dir/name.std{out,err}.log`. On a timeout or an interrupt the whole group is killed.

    With `probe` (e.g. "has the simulator received a request yet?"), the command's CPU time
    is read when the probe first says yes: its start-up cost, subtracted for the net CPU per
    job."""
    started = time.perf_counter()
    with (
        (log_dir / f"{name}.stdout.log").open("wb") as stdout,
        (log_dir / f"{name}.stderr.log").open("wb") as stderr,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, *cmd], cwd=_ROOT, env=clean_env(), stdout=stdout,
            stderr=stderr, start_new_session=True,
        )  # fmt: skip
        try:
            startup_cpu_s = _watch_startup(proc, probe) if probe is not None else None
            code = proc.wait(timeout=max(0.0, timeout_s - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ProcessTimedOut(name, timeout_s) from None
        except BaseException:
            _kill_group(proc)
            raise
    return Started(code, time.perf_counter() - started, startup_cpu_s)


def _watch_startup(
    launcher: subprocess.Popen[bytes], probe: Callable[[], bool], every_s: float = 0.02
) -> float | None:
    """The CPU time of the launcher's child when `probe()` first holds (None if it exits
    first). Polls every `every_s` (a short phase: only until the first request)."""
    while launcher.poll() is None:
        child = _only_child(launcher.pid)
        if child is not None and probe():
            return _cpu_s(child)
        time.sleep(every_s)
    return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _only_child(pid: int) -> int | None:
    """The first child of `pid` (Linux /proc), or None."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of `pid` (all its threads) from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) if text else "(no output)"


def read_run_finished(stderr_log: Path) -> RunFinished | None:
    """The last `run.finished` event among the JSON log lines of `stderr_log`."""
    found: RunFinished | None = None
    with stderr_log.open("rb") as handle:
        for line in handle:
            if b'"run.finished"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "run.finished":
                found = msgspec.convert(event, RunFinished)
    return found


def run_engine(
    args: list[str], log_dir: Path, timeout_s: float, first_request: Callable[[], bool]
) -> tuple[Started, RunFinished]:
    """`python -m engine generate ARGS`: how it ran, and its run.finished summary."""
    cmd = _python_m("engine", "generate", *args)
    run = _run_logged(cmd, log_dir, "engine", timeout_s, first_request)
    stderr_log = log_dir / "engine.stderr.log"
    if run.exit_code == EXIT_USAGE:
        raise EngineRejected(run.exit_code, _tail(stderr_log))
    finished = read_run_finished(stderr_log)
    if run.exit_code not in OK_EXITS or finished is None:
        raise EngineFailed(run.exit_code, _tail(stderr_log))
    return run, finished


def export_results(run_dir: Path, log_dir: Path, timeout_s: float) -> None:
    """`python -m engine export --format results`, untimed: a PERSONA run writes its calls'
    results.jsonl (which the bench reads) only when asked, since issue 11."""
    cmd = _python_m("engine", "export", "--run-dir", str(run_dir), "--format", "results")
    run = _run_logged(cmd, log_dir, "export", timeout_s, None)
    if run.exit_code != 0:
        raise EngineFailed(run.exit_code, _tail(log_dir / "export.stderr.log"))


def run_bare(
    requests: Path, base_url: str, concurrency: int, log_dir: Path, timeout_s: float
) -> tuple[BareResult, float]:
    """`python -m bench bare …` in its own process: (its result, wall s)."""
    out = log_dir / "bare.json"
    cmd = _python_m(
        "bench", "bare", "--requests", str(requests), "--base-url", base_url,
        "--concurrency", str(concurrency), "--out", str(out),
    )  # fmt: skip
    run = _run_logged(cmd, log_dir, "bare", timeout_s)
    if run.exit_code != 0:
        raise BareFailed(run.exit_code, _tail(log_dir / "bare.stderr.log"))
    return bare_result_decoder.decode(out.read_bytes()), run.wall_s
