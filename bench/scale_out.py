"""`python -m bench.scale_out`: the `scale-out` scenario. One run of N requests done by 1, 2
and 4 worker processes on one PostgreSQL queue, next to the single SQLite process, at each
simulator latency asked for.

Each measured run gets a fresh simulator process and, for PostgreSQL, a fresh database
(created and dropped with `psql` against `--pg-admin`). The PostgreSQL runs enqueue first
(`generate --queue URL --enqueue-only`, not timed), then start the workers together and time
them from start to the last one's exit (process start-up included, as for SQLite). The engine
runs as a user runs it, as subprocesses; nothing of it is imported here.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec

from bench.procs import SimProcess, clean_env
from bench.requests import write_requests

_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Measured(msgspec.Struct, frozen=True):
    latency_ms: float
    backend: str  # sqlite | postgresql
    workers: int
    concurrency: int  # per worker
    jobs: int
    wall_s: float
    rate_per_s: float
    duplicate_calls: int  # paid twice (the simulator's count)


def _engine(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=_ROOT, env=clean_env(),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _psql(admin: str, command: str) -> None:
    subprocess.run(["psql", admin, "-qc", command], check=True, capture_output=True)


def _with_db(admin: str, name: str) -> str:
    return urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"{what} failed ({result.returncode}): {result.stderr[-2000:]}")


def measure_sqlite(requests: Path, sim: SimProcess, work: Path, concurrency: int) -> float:
    started = time.monotonic()
    result = _engine(
        "generate", "--requests", str(requests), "--run-dir", str(work / "sqlite"),
        "--base-url", sim.base_url, "--concurrency", str(concurrency), "--no-cache",
        "--no-progress",
    )  # fmt: skip
    _check(result, "sqlite run")
    return time.monotonic() - started


def measure_postgres(
    requests: Path, sim: SimProcess, admin: str, workers: int, concurrency: int
) -> float:
    name = f"persona_testbed_bench_{secrets.token_hex(4)}"
    _psql(admin, f'CREATE DATABASE "{name}"')
    url = _with_db(admin, name)
    try:
        flags = ("--base-url", sim.base_url, "--concurrency", str(concurrency), "--no-cache",
                 "--no-progress")  # fmt: skip
        enqueue = _engine("generate", "--requests", str(requests), "--queue", url,
                          "--enqueue-only", *flags)  # fmt: skip
        _check(enqueue, "enqueue")
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "engine", "worker", "--queue", url, *flags],
                cwd=_ROOT,
                env=clean_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        codes = [p.wait(timeout=1800) for p in procs]
        elapsed = time.monotonic() - started
        if any(codes):
            raise SystemExit(f"a worker failed: exit statuses {codes}")
        return elapsed
    finally:
        _psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args: argparse.Namespace) -> list[Measured]:
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        work = Path(tmp)
        requests = write_requests(work / "requests.jsonl", args.jobs)
        for latency in args.latencies:
            variants = [("sqlite", 1)] + [("postgresql", n) for n in args.workers]
            for backend, n in variants:
                with SimProcess(["--latency-ms", str(latency)], work) as sim:
                    if backend == "sqlite":
                        wall = measure_sqlite(requests, sim, work / f"s{latency}", args.concurrency)
                    else:
                        wall = measure_postgres(requests, sim, args.pg_admin, n, args.concurrency)
                    dup = int(sim.stats()["duplicate_completions"])
                m = Measured(latency, backend, n, args.concurrency, args.jobs, round(wall, 2),
                             round(args.jobs / wall, 1), dup)  # fmt: skip
                print(json.dumps(msgspec.to_builtins(m)), file=sys.stderr, flush=True)
                results.append(m)
    return results


def render(results: list[Measured]) -> str:
    lines = [
        "| latency | backend | workers | wall s | jobs/s | vs SQLite | paid twice |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {m.latency_ms: m.rate_per_s for m in results if m.backend == "sqlite"}
    for m in results:
        ratio = m.rate_per_s / base[m.latency_ms] if base.get(m.latency_ms) else 0.0
        lines.append(
            f"| {m.latency_ms:g} ms | {m.backend} | {m.workers} | {m.wall_s} | {m.rate_per_s} "
            f"| {ratio:.2f} x | {m.duplicate_calls} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__)
    p.add_argument("--jobs", type=int, default=20_000, help="requests (default: %(default)s)")
    p.add_argument(
        "--latencies", type=float, nargs="+", default=[50.0, 0.0],
        help="simulator latencies in ms (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4],
        help="PostgreSQL worker counts (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--concurrency", type=int, default=64, help="per process (default: %(default)s)")
    p.add_argument("--pg-admin", default=DEFAULT_ADMIN, help="(default: %(default)s)")
    p.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = p.parse_args(argv)
    results = run(args)
    if args.out is not None:
        args.out.write_bytes(msgspec.json.encode(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
