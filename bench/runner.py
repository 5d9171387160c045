"""Run one scenario: for each concurrency, each variant against a fresh simulator process.

    check the engine supports the scenario's flags (else: pending)
    → write the request file (the same requests for every variant)
    → for each concurrency, for each round (--repeat), for each variant (bare, engine,
      engine-sdk, side by side):
        start a simulator with the scenario's flags and seed
        → run the client as a subprocess → read its outputs and the simulator's /stats
        → stop the simulator, delete the bulky files (unless kept)
    → ratios against the bare client of the same concurrency and round, and a faulty run's
      wall time against the engine-fault-free run's

A fresh simulator per variant keeps the counters, the outage clock and the rate-limit buckets
equal for every variant (the simulator counts a repeated body as a duplicate paid call).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import msgspec
import structlog

from bench.collect import (
    Context,
    Measured,
    bare_measured,
    bare_metrics,
    engine_metrics,
    read_engine_jobs,
    sim_counts,
)
from bench.learned import LEARNED_BIN_S, learned_series, read_history
from bench.measure import ratio
from bench.procs import (
    SimProcess,
    export_results,
    run_bare,
    run_engine,
    supported_generate_flags,
)
from bench.report import RunMetrics
from bench.requests import write_requests
from bench.scenarios import (
    CALLS_PER_PERSONA,
    Scenario,
    Variant,
    engine_args,
    engine_flags_needed,
    mean_latency_s,
    sim_args,
)
from engine.prices import Price

log = structlog.get_logger()

Samples = dict[tuple[str, int, int], tuple[list[float], list[float]]]  # variant, conc., round


class ScenarioPending(Exception):
    """The engine lacks flags this scenario needs (`missing`), so it cannot run yet."""

    def __init__(self, scenario: str, missing: list[str]) -> None:
        super().__init__(
            f"{scenario}: pending: `python -m engine generate` has no {', '.join(missing)} "
            "flag(s) yet"
        )
        self.scenario = scenario
        self.missing = missing


class RunOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    out_dir: Path
    price: Price
    keep: bool = False  # keep queues, results and the request file
    process_timeout_s: float = 1800.0


def _context(scenario: Scenario, price: Price) -> Context:
    return Context(
        mean_latency_s=mean_latency_s(scenario.sim),
        rpm=scenario.sim.rpm,
        tpm=scenario.sim.tpm,
        max_tokens=scenario.requests.max_tokens,
        price=price,
    )


def run_scenario(scenario: Scenario, options: RunOptions) -> tuple[list[RunMetrics], Samples]:
    """Every (concurrency, round, variant) run of `scenario`, in order, with ratios to `bare`."""
    supported = supported_generate_flags()
    check_supported(scenario, supported)
    requests = options.out_dir / "requests.jsonl"
    if scenario.requests.source == "synthetic":
        log.info("bench.requests", jobs=scenario.jobs, file=str(requests))
        spec = scenario.requests
        write_requests(requests, scenario.jobs, spec.model, spec.max_tokens)
    bench = _Bench(scenario, options, requests, supported)
    runs: list[RunMetrics] = []
    try:
        for concurrency in scenario.concurrency:
            for round_ in range(scenario.repeat):
                batch = [bench.run(variant, concurrency, round_) for variant in scenario.variants]
                runs += with_fault_free_ratios(with_bare_ratios(batch), outage_s(scenario))
    finally:
        if not options.keep:
            requests.unlink(missing_ok=True)
    return runs, bench.samples


def check_supported(scenario: Scenario, supported: frozenset[str]) -> None:
    """Raise ScenarioPending when the engine's `generate` lacks a flag the scenario needs."""
    if all(v == "bare" for v in scenario.variants):
        return
    needed = engine_flags_needed(scenario)
    if scenario.requests.source == "persona" and scenario.jobs > 0:
        needed.add("--personas")
    missing = sorted(needed - supported)
    if missing:
        raise ScenarioPending(scenario.name, missing)


class _Bench:
    """What every run of one scenario shares; `run` measures one variant in one round."""

    def __init__(
        self, scenario: Scenario, options: RunOptions, requests: Path, supported: frozenset[str]
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.requests = requests
        self.supported = supported
        self.ctx = _context(scenario, options.price)
        self.samples: Samples = {}

    def run(self, variant: Variant, concurrency: int, round_: int) -> RunMetrics:
        suffix = f"-r{round_ + 1}" if self.scenario.repeat > 1 else ""
        vdir = self.options.out_dir / f"c{concurrency}-{variant}{suffix}"
        vdir.mkdir(parents=True)
        log.info("bench.run.start", variant=variant, concurrency=concurrency, round=round_ + 1)
        metrics, latencies = _run_variant(
            self.scenario, variant, concurrency, vdir, self.requests, self.ctx, self.options,
            self.supported,
        )  # fmt: skip
        log.info(
            "bench.run.finished", variant=variant, concurrency=concurrency,
            rate_per_s=metrics.rate_per_s, done=metrics.done, failed=metrics.failed,
        )  # fmt: skip
        self.samples[(variant, concurrency, round_)] = latencies
        return msgspec.structs.replace(metrics, round=round_)


def with_bare_ratios(batch: list[RunMetrics]) -> list[RunMetrics]:
    """Each run of one round at one concurrency with `rate_vs_bare` set from that round's bare
    run (if any)."""
    bare = next((r for r in batch if r.variant == "bare"), None)
    if bare is None:
        return batch
    return [
        msgspec.structs.replace(r, rate_vs_bare=_round(ratio(r.rate_per_s, bare.rate_per_s)))
        for r in batch
    ]


def outage_s(scenario: Scenario) -> float:
    """The outage's length, when the scenario starts one (by time or by request count)."""
    sim = scenario.sim
    starts = sim.outage_after_s is not None or scenario.outage_at is not None
    return sim.outage_for_s if starts else 0.0


def with_fault_free_ratios(batch: list[RunMetrics], outage_s: float) -> list[RunMetrics]:
    """Each faulty run of one round at one concurrency with `time_vs_fault_free` set from that
    round's engine-fault-free run (if any): (its elapsed time - `outage_s`) / the fault-free
    run's."""
    clean = next((r for r in batch if r.variant == "engine-fault-free"), None)
    if clean is None:
        return batch
    return [
        r
        if r is clean
        else msgspec.structs.replace(
            r, time_vs_fault_free=_round(ratio(r.elapsed_s - outage_s, clean.elapsed_s))
        )
        for r in batch
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _run_variant(
    scenario: Scenario,
    variant: Variant,
    concurrency: int,
    vdir: Path,
    requests: Path,
    ctx: Context,
    options: RunOptions,
    supported: frozenset[str],
) -> tuple[RunMetrics, tuple[list[float], list[float]]]:
    timeout_s = options.process_timeout_s
    with SimProcess(sim_args(scenario, variant), vdir) as sim:
        if variant == "bare":
            result, wall_s = run_bare(requests, sim.base_url, concurrency, vdir, timeout_s)
            counts = sim_counts(sim.stats())
            measured = bare_measured(result, concurrency, scenario.jobs, wall_s)
            return bare_metrics(result, measured, counts, ctx)
        args = _engine_command(scenario, variant, concurrency, vdir, requests, sim.base_url)
        args += _optional_flags(vdir, supported)
        started, finished = run_engine(args, vdir, timeout_s, sim.has_requests)
        counts = sim_counts(sim.stats())
    if scenario.requests.source == "persona":
        export_results(vdir / "run", vdir, timeout_s)
    jobs = read_engine_jobs(vdir / "run")
    history = read_history(vdir / "run")
    if not options.keep:
        _remove_bulk(vdir)
    measured = Measured(
        variant=variant,
        concurrency=concurrency,
        jobs=scenario.jobs if scenario.requests.source == "synthetic" else jobs.done + jobs.failed,
        done=jobs.done,
        failed=jobs.failed,
        retries=jobs.retries,
        elapsed_s=finished.elapsed_s,
        process_wall_s=started.wall_s,
        cpu_s=finished.cpu_s,
        peak_rss_mb=finished.peak_rss_mb,
        startup_cpu_s=started.startup_cpu_s,
    )
    metrics, samples = engine_metrics(measured, counts, ctx, jobs)
    learned = learned_series(history, LEARNED_BIN_S, scenario.sim.rpm)
    return msgspec.structs.replace(metrics, learned=learned), samples


def _engine_command(
    scenario: Scenario,
    variant: Variant,
    concurrency: int,
    vdir: Path,
    requests: Path,
    base_url: str,
) -> list[str]:
    args = ["--run-dir", str(vdir / "run"), "--base-url", base_url]
    args += ["--concurrency", str(concurrency), *engine_args(scenario)]
    if scenario.requests.source == "synthetic":
        args += ["--requests", str(requests)]
    elif scenario.jobs > 0:
        args += ["--personas", str(personas_for(scenario.jobs))]
    if variant == "engine-sdk":
        args += ["--transport", "sdk"]
    elif variant == "engine-aiohttp":
        args += ["--transport", "aiohttp"]
    return args


def personas_for(jobs: int) -> int:
    """How many personas give about `jobs` calls (each brings a critique and a revise call per
    prompt; the answers are shared between personas)."""
    return max(1, math.ceil(jobs / CALLS_PER_PERSONA))


def _optional_flags(vdir: Path, supported: frozenset[str]) -> list[str]:
    """A private response cache (a shared one would serve later runs without any call), and
    no live display."""
    args: list[str] = []
    if "--cache" in supported:
        args += ["--cache", str(vdir / "cache.sqlite")]
    if "--no-progress" in supported:
        args.append("--no-progress")
    return args


def _remove_bulk(vdir: Path) -> None:
    shutil.rmtree(vdir / "run", ignore_errors=True)
    for path in vdir.glob("cache.sqlite*"):
        path.unlink()
