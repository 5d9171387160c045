"""The floor of this machine: CPU per call of the simulator, the bare client and the engine.

    python -m bench.floor [--calls 100000] [--personas 100] [--concurrency 64]

One simulator (zero latency, 64-token replies) serves three clients in turn, each a whole
process: the bare aiohttp client and `generate --requests` on the same synthetic request
file, then a PERSONA run of `--personas` personas (its prompts are a persona's length, its
calls answer → critique → revise). For each: calls, wall seconds, calls per second, the
client's CPU per call (the process's user + system time: start-up, enqueue and output
included) and the simulator's CPU per call in the same span (read from /proc, so Linux only).
The full default run's 635,577 calls at the bare client's rate are the least a client can
take on this machine with this simulator; the two CPU figures say which side spends what.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from bench.procs import SimProcess, clean_env
from bench.requests import write_requests

FULL_RUN_CALLS = 635_577
_ROOT = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


class Measured(msgspec.Struct, frozen=True):
    client: str
    calls: int
    wall_s: float
    calls_per_s: float
    client_cpu_ms_per_call: float
    sim_cpu_ms_per_call: float


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(name: str, cmd: list[str], sim_pid: int, calls: int | None) -> Measured:
    """Run `cmd` to its end; `calls` None: the engine's run.finished line says how many."""
    sim0, client0, t0 = _proc_cpu_s(sim_pid), _children_cpu_s(), time.perf_counter()
    done = subprocess.run(
        cmd, cwd=_ROOT, env=clean_env(), capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    client, sim = _children_cpu_s() - client0, _proc_cpu_s(sim_pid) - sim0
    if done.returncode != 0:
        raise SystemExit(f"{name} exited {done.returncode}: {done.stderr[-2000:]}")
    calls = _finished_calls(done.stderr) if calls is None else calls
    return Measured(
        client=name,
        calls=calls,
        wall_s=round(wall, 2),
        calls_per_s=round(calls / wall, 1),
        client_cpu_ms_per_call=round(1000 * client / calls, 3),
        sim_cpu_ms_per_call=round(1000 * sim / calls, 3),
    )


def _finished_calls(stderr: str) -> int:
    for line in stderr.splitlines():
        if '"run.finished"' in line:
            return int(json.loads(line)["done"])
    raise SystemExit("the engine logged no run.finished line")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=100_000, help="synthetic requests (%(default)s)")
    p.add_argument("--personas", type=int, default=100, help="of the PERSONA run (%(default)s)")
    p.add_argument("--concurrency", type=int, default=64, help="(default: %(default)s)")
    args = p.parse_args(argv)
    py, c = sys.executable, str(args.concurrency)
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        work = Path(tmp)
        requests = write_requests(work / "requests.jsonl", args.calls)
        with SimProcess([], work) as sim:
            url, pid = sim.base_url, sim.pid
            engine = [py, "-m", "engine", "generate", "--base-url", url, "--concurrency", c]
            engine += ["--no-progress", "--cache", str(work / "cache.sqlite")]
            bare = [py, "-m", "bench", "bare", "--requests", str(requests), "--base-url", url]
            bare += ["--concurrency", c, "--out", str(work / "bare.json")]
            by_file = [*engine, "--requests", str(requests), "--run-dir", str(work / "requests")]
            persona = [*engine, "--personas", str(args.personas), "--run-dir", str(work / "p")]
            rows = [
                _measure("bare", bare, pid, args.calls),
                _measure("engine --requests", by_file, pid, args.calls),
                _measure(f"engine --personas {args.personas}", persona, pid, None),
            ]
    print("| client | calls | wall s | calls/s | client CPU ms/call | simulator CPU ms/call |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.client} | {r.calls:,} | {r.wall_s} | {r.calls_per_s:,} | "
              f"{r.client_cpu_ms_per_call} | {r.sim_cpu_ms_per_call} |")  # fmt: skip
    floor = rows[0]
    print(f"\nthe full default run's {FULL_RUN_CALLS:,} calls at the bare client's rate: "
          f"{FULL_RUN_CALLS / floor.calls_per_s:.0f} s")  # fmt: skip
    print(json.dumps([msgspec.to_builtins(r) for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
