"""Named, reproducible benchmark configurations: the simulator's flags, the engine's flags, the
request file, the variants measured side by side, and the targets the run is checked against.

A scenario is data (frozen Structs); `apply_overrides` layers command-line flags on top and
`sim_args` / `engine_args` turn the result into the two processes' command lines.

Variants (each against a fresh simulator process started with the same flags and seed):
- `bare`: bench/bare.py, a bare aiohttp client with no queue, no persistence, no retries;
  the ceiling for a Python client on this machine.
- `engine`: `python -m engine generate` with its default transport (`http1`: workers/http1.py).
- `engine-aiohttp`: the same with `--transport aiohttp` (the default before issue 11).
- `engine-sdk`: the same with `--transport sdk` (the openai SDK).
- `engine-fault-free`: the engine (default transport) against a simulator with the scenario's faults
  turned off (no 5xx, injected 429s, hangs, malformed bodies or outage; latency and limits
  kept): the baseline a faulty run's wall time is compared with (`time_vs_fault_free`).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

Variant = Literal["bare", "engine", "engine-aiohttp", "engine-sdk", "engine-fault-free"]
#: the side-by-side comparison most scenarios run
VARIANTS: tuple[Variant, ...] = ("bare", "engine", "engine-sdk")
ALL_VARIANTS: tuple[Variant, ...] = (*VARIANTS, "engine-aiohttp", "engine-fault-free")
Op = Literal[">=", "<=", "<", ">", "=="]
#: persona-full with --jobs N runs the first ceil(N / CALLS_PER_PERSONA) personas: each brings
#: a critique and a revise call for each of its 200 prompts (the answers are shared).
CALLS_PER_PERSONA = 400


class SimSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`python -m engine simulate` flags (see workers/sim_config.py for their meaning)."""

    latency_ms: float = 0.0
    latency_dist: Literal["fixed", "lognormal"] = "fixed"
    latency_sigma: float = 0.8
    output_tokens: int = 64  # mean completion length (tokens)
    rpm: int | None = None
    tpm: int | None = None  # counts prompt + max_tokens per request, like OpenAI
    rpm_limit_mode: Literal["headers", "retry-after", "bare"] = "headers"
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_s: float = 300.0
    malformed_rate: float = 0.0
    outage_after_s: float | None = None
    outage_for_s: float = 0.0
    extra_args: tuple[str, ...] = ()


FAULT_FREE = {
    "error_rate": 0.0,
    "rate_limit_rate": 0.0,
    "timeout_rate": 0.0,
    "malformed_rate": 0.0,
    "outage_after_s": None,
    "outage_for_s": 0.0,
}


class EngineSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`python -m engine generate` flags beyond the ones every run gets; None: engine default."""

    rpm: int | None = None
    tpm: int | None = None
    max_attempts: int | None = None
    retry_base_s: float | None = None
    retry_max_s: float | None = None
    timeout_s: float | None = None
    extra_args: tuple[str, ...] = ()


class RequestSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The request file: synthetic (bench/requests.py) or the engine's own PERSONA job graph."""

    source: Literal["synthetic", "persona"] = "synthetic"
    model: str = "sim-small"  # also the price-table entry the cost is computed with
    max_tokens: int = 64


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A promised figure: `metric op threshold` for every run of `variant` (a RunMetrics field)."""

    label: str
    metric: str
    op: Op
    threshold: float
    variant: Variant = "engine"


class Scenario(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    description: str
    jobs: int
    concurrency: tuple[int, ...]
    variants: tuple[Variant, ...]
    sim: SimSettings = SimSettings()
    engine: EngineSettings = EngineSettings()
    requests: RequestSettings = RequestSettings()
    targets: tuple[Target, ...] = ()
    seed: int = 0
    repeat: int = 1  # rounds of every variant, alternating; checks use the median
    # the outage (sim.outage_for_s long) begins when this share of the jobs' requests have
    # reached the simulator (`--outage-after-requests`): mid-run whatever the start-up time
    outage_at: float | None = None


_HALF_OF_BARE = Target("engine >= 50 % of the bare client's rate", "rate_vs_bare", ">=", 0.5)
_NO_429 = Target("< 1 % of calls answered 429", "rate_429_fraction", "<", 0.01)
_NO_DUPLICATES = Target("no duplicate paid calls", "duplicate_paid_calls", "==", 0)
_NO_FAILURES = Target("every job done (no failures)", "failed", "==", 0)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="overhead",
            description="zero latency: the engine's own cost per job against the bare client",
            jobs=10_000,
            concurrency=(64, 256),
            variants=VARIANTS,
            targets=(_HALF_OF_BARE,),
        ),
        Scenario(
            name="latency",
            description="lognormal latency (median 500 ms, sigma 0.7), 350-token replies",
            jobs=5_000,
            concurrency=(256,),
            variants=VARIANTS,
            sim=SimSettings(
                latency_ms=500.0, latency_dist="lognormal", latency_sigma=0.7, output_tokens=350
            ),
            requests=RequestSettings(max_tokens=1024),
        ),
        Scenario(
            name="latency-fixed",
            description="fixed 200 ms latency at concurrency 64: ceiling 320 jobs/s",
            jobs=10_000,
            concurrency=(64,),
            variants=VARIANTS,
            sim=SimSettings(latency_ms=200.0),
            targets=(Target(">= 95 % of the 320 jobs/s ceiling", "efficiency", ">=", 0.95),),
        ),
        Scenario(
            name="rate-limited",
            description="the simulator enforces 6,000 RPM and 1.5M TPM; the engine's budget too",
            jobs=6_000,
            concurrency=(64,),
            variants=("engine",),
            sim=SimSettings(latency_ms=50.0, rpm=6_000, tpm=1_500_000),
            engine=EngineSettings(rpm=6_000, tpm=1_500_000),
            targets=(
                Target(">= 97 % of the allowed rate", "efficiency", ">=", 0.97),
                _NO_429,
                _NO_DUPLICATES,
            ),
        ),
        Scenario(
            name="rate-discovery",
            description="the simulator enforces 1,200 RPM with bare 429s (no Retry-After, no "
            "x-ratelimit-*); the engine is given no --rpm and learns the rate",
            jobs=2_400,
            concurrency=(64,),
            variants=("engine",),
            sim=SimSettings(latency_ms=50.0, rpm=1_200, rpm_limit_mode="bare"),
            targets=(
                Target(">= 85 % of the 1,200 RPM limit", "efficiency", ">=", 0.85),
                Target("<= 5 % of calls answered 429", "rate_429_fraction", "<=", 0.05),
                _NO_FAILURES,
            ),
        ),
        Scenario(
            name="rate-discovery-retry-after",
            description="as rate-discovery, but the 429s carry Retry-After (still no "
            "x-ratelimit-*)",
            jobs=2_400,
            concurrency=(64,),
            variants=("engine",),
            sim=SimSettings(latency_ms=50.0, rpm=1_200, rpm_limit_mode="retry-after"),
            targets=(
                Target(">= 90 % of the 1,200 RPM limit", "efficiency", ">=", 0.90),
                Target("<= 2 % of calls answered 429", "rate_429_fraction", "<=", 0.02),
                _NO_FAILURES,
            ),
        ),
        Scenario(
            name="faults",
            description="5 % 5xx, 2 % injected 429, 0.5 % hangs, 2 % malformed, 2 s outage at 2 s",
            jobs=5_000,
            concurrency=(64,),
            variants=("engine",),
            sim=SimSettings(
                latency_ms=20.0,
                error_rate=0.05,
                rate_limit_rate=0.02,
                timeout_rate=0.005,
                hang_s=1.0,
                malformed_rate=0.02,
                outage_after_s=2.0,
                outage_for_s=2.0,
            ),
            engine=EngineSettings(
                max_attempts=12, retry_base_s=0.05, retry_max_s=1.0, timeout_s=0.5
            ),
            targets=(_NO_FAILURES, _NO_DUPLICATES),
        ),
        Scenario(
            name="outage",
            description="5 % 5xx and a 20 s outage mid-run, against the same run without faults",
            jobs=40_000,
            concurrency=(64,),
            variants=("engine-fault-free", "engine"),
            sim=SimSettings(latency_ms=100.0, error_rate=0.05, outage_for_s=20.0),
            outage_at=0.5,
            targets=(
                _NO_FAILURES,
                _NO_DUPLICATES,
                Target(
                    "no longer than the outage + 10 % over the fault-free run",
                    "time_vs_fault_free",
                    "<=",
                    1.10,
                ),
            ),
        ),
        Scenario(
            name="memory",
            description="317,200 requests at zero latency: the engine's peak RSS",
            jobs=317_200,
            concurrency=(256,),
            variants=("engine",),
            targets=(Target("peak RSS < 300 MB", "peak_rss_mb", "<", 300.0),),
        ),
        Scenario(
            name="persona-full",
            description="the full default PERSONA run (generate without --requests; "
            "--jobs N: the first N/400 personas)",
            jobs=0,
            concurrency=(256,),
            variants=("engine",),
            requests=RequestSettings(source="persona"),
        ),
        Scenario(
            name="custom",
            description="zero latency unless flags say otherwise; every flag applies",
            jobs=5_000,
            concurrency=(64,),
            variants=("bare", "engine"),
        ),
    )
}


class Overrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Command-line values layered on a scenario; None (or empty) leaves its value."""

    jobs: int | None = None
    concurrency: tuple[int, ...] = ()
    variants: tuple[Variant, ...] = ()
    seed: int | None = None
    repeat: int | None = None
    sim: dict[str, object] = {}
    engine: dict[str, object] = {}
    requests: dict[str, object] = {}


def apply_overrides(scenario: Scenario, over: Overrides) -> Scenario:
    """The scenario with every given override applied (validated by the Structs' types)."""
    top: dict[str, object] = {
        "jobs": over.jobs,
        "concurrency": over.concurrency or None,
        "variants": over.variants or None,
        "seed": over.seed,
        "repeat": over.repeat,
    }
    top = {k: v for k, v in top.items() if v is not None}
    parts = {
        "sim": _merge(scenario.sim, over.sim),
        "engine": _merge(scenario.engine, over.engine),
        "requests": _merge(scenario.requests, over.requests),
    }
    merged = msgspec.to_builtins(scenario) | top | parts
    return msgspec.convert(merged, Scenario)


def _merge(part: msgspec.Struct, values: dict[str, object]) -> dict[str, object]:
    base: dict[str, object] = msgspec.to_builtins(part)
    return base | {k: v for k, v in values.items() if v is not None}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flags(settings: msgspec.Struct, defaults: msgspec.Struct) -> list[str]:
    """`--name value` for each field that differs from `defaults` (None means: leave out)."""
    args: list[str] = []
    for field in settings.__struct_fields__:
        value = getattr(settings, field)
        if field == "extra_args" or value is None or value == getattr(defaults, field):
            continue
        args += [_flag(field), str(value)]
    return args


def sim_args(scenario: Scenario, variant: Variant = "engine") -> list[str]:
    """The simulator's command-line flags for this scenario (its faults off for
    `engine-fault-free`)."""
    if variant == "engine-fault-free":
        sim = msgspec.structs.replace(scenario.sim, **FAULT_FREE)
        outage: list[str] = []
    else:
        sim = scenario.sim
        outage = []
        if scenario.outage_at is not None and sim.outage_after_s is None and sim.outage_for_s > 0:
            after = max(1, round(scenario.jobs * scenario.outage_at))
            outage = ["--outage-after-requests", str(after)]
    args = [*_flags(sim, SimSettings()), *outage, "--seed", str(scenario.seed)]
    return args + list(sim.extra_args)


def engine_args(scenario: Scenario) -> list[str]:
    """The engine's extra `generate` flags for this scenario (limits, retries, timeouts)."""
    engine = scenario.engine
    return [*_flags(engine, EngineSettings()), "--seed", str(scenario.seed), *engine.extra_args]


def engine_flags_needed(scenario: Scenario) -> set[str]:
    """The `generate` flags this scenario relies on (to report it pending when missing)."""
    return {a for a in engine_args(scenario) if a.startswith("--")}


def mean_latency_s(sim: SimSettings) -> float:
    """The mean of the simulator's latency distribution (lognormal: median * e^(sigma²/2))."""
    median_s = sim.latency_ms / 1000.0
    if sim.latency_dist == "lognormal":
        return median_s * math.exp(sim.latency_sigma**2 / 2.0)
    return median_s
