"""The simulator's configuration: one frozen Struct, checked when it is built or decoded."""

from __future__ import annotations

import math
from typing import Literal

import msgspec

_FAULT_RATES = (
    "error_rate",
    "rate_limit_rate",
    "timeout_rate",
    "malformed_rate",
    "content_filter_rate",
)


class SimConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the simulated OpenAI-compatible API behaves.

    The five fault rates are fractions of requests (drawn in arrival order from
    `random.Random(seed)`); they are disjoint, so their sum must not exceed 1.

    Building one never raises (so a CLI can report every problem at once): call
    `config_problems`, or let `create_app` / `start_simulator` refuse it with `InvalidSimConfig`.
    """

    latency_ms: float = 0.0
    latency_dist: Literal["fixed", "lognormal"] = "fixed"  # lognormal: median = latency_ms
    latency_sigma: float = 0.8
    output_tokens: int = 64  # mean completion length in words (1 word = 1 token)
    rpm: int | None = None  # requests per minute enforced
    tpm: int | None = None  # tokens per minute enforced (prompt + requested max completion)
    # how a request over the rpm/tpm limits is refused: `headers` (429 with Retry-After,
    # retry-after-ms and x-ratelimit-*, which every answer also carries), `retry-after`
    # (429 with `retry-after` in whole seconds only), `bare` (429 with neither, like a proxy)
    rpm_limit_mode: Literal["headers", "retry-after", "bare"] = "headers"
    error_rate: float = 0.0  # answered 500 or 503
    rate_limit_rate: float = 0.0  # answered 429 with Retry-After even under the limits
    timeout_rate: float = 0.0  # hang for hang_s seconds (then 504)
    hang_s: float = 300.0
    malformed_rate: float = 0.0  # answered 200 with a body that is not a valid completion
    # answered 200 with every choice withheld (finish_reason "content_filter", no content)
    content_filter_rate: float = 0.0
    # when set, a request whose `Authorization: Bearer` is not this key gets 401
    # invalid_api_key, as OpenAI answers a wrong key (never echoed back)
    api_key: str | None = None
    outage_after_s: float | None = None  # seconds after start when an outage begins
    # or: the outage begins when this many completion requests have arrived (the last of them
    # is the first refused), wherever that falls in time; at most one of the two
    outage_after_requests: int | None = None
    outage_for_s: float = 0.0  # during it every completion request gets 503
    models: tuple[str, ...] = ()  # when non-empty, other models get 404 model_not_found
    seed: int = 0
    # JSON verdicts (workers.sim.structured): share with `needs_revision` false
    pass_rate: float = 0.5
    # the Batch API (workers.sim.batches): retrieves a batch stays in_progress, then
    # finalizing; shares of lines answered 500 / 400 in the error file; which batches (1-based,
    # in creation order) fail validation or expire, and the share of lines an expired one ran;
    # batch_api false: /v1/batches answers 404 (a provider without the Batch API)
    batch_polls: int = 1
    batch_finalizing_polls: int = 0
    batch_line_error_rate: float = 0.0
    batch_line_permanent_rate: float = 0.0
    batch_fail_validation: tuple[int, ...] = ()
    batch_expire: tuple[int, ...] = ()
    batch_expire_share: float = 0.5
    batch_api: bool = True


class InvalidSimConfig(ValueError):
    """A `SimConfig` the simulator cannot serve; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check_config(config: SimConfig) -> SimConfig:
    """`config` itself when it can be served; `InvalidSimConfig` otherwise."""
    problems = config_problems(config)
    if problems:
        raise InvalidSimConfig(problems)
    return config


def config_problems(config: SimConfig) -> list[str]:
    """Every reason `config` cannot be served (empty when it is valid)."""
    problems: list[str] = []
    non_negative = {
        "latency_ms": config.latency_ms,
        "latency_sigma": config.latency_sigma,
        "hang_s": config.hang_s,
        "outage_for_s": config.outage_for_s,
        "outage_after_s": config.outage_after_s or 0.0,
    }
    for name, value in non_negative.items():
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"{name} must be a finite number >= 0, got {value}")
    problems += _outage_problems(config)
    if config.output_tokens < 1:
        problems.append(f"output_tokens must be >= 1, got {config.output_tokens}")
    for name, limit in (("rpm", config.rpm), ("tpm", config.tpm)):
        if limit is not None and limit < 1:
            problems.append(f"{name} must be >= 1 or None, got {limit}")
    rates = {name: float(getattr(config, name)) for name in _FAULT_RATES}
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            problems.append(f"{name} must be within [0, 1], got {rate}")
    if not 0.0 <= config.pass_rate <= 1.0:
        problems.append(f"pass_rate must be within [0, 1], got {config.pass_rate}")
    problems += _batch_problems(config)
    if sum(rates.values()) > 1.0 + 1e-9:
        problems.append(f"the fault rates {', '.join(_FAULT_RATES)} must sum to at most 1")
    return problems


def _outage_problems(config: SimConfig) -> list[str]:
    after = config.outage_after_requests
    if after is None:
        return []
    problems = [] if after >= 1 else [f"outage_after_requests must be >= 1 or None, got {after}"]
    if config.outage_after_s is not None:
        problems.append("give outage_after_s or outage_after_requests, not both")
    return problems


def _batch_problems(config: SimConfig) -> list[str]:
    problems: list[str] = []
    for name in ("batch_polls", "batch_finalizing_polls"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(config, name)}")
    batch_rates = ("batch_line_error_rate", "batch_line_permanent_rate", "batch_expire_share")
    for name in batch_rates:
        if not 0.0 <= getattr(config, name) <= 1.0:
            problems.append(f"{name} must be within [0, 1], got {getattr(config, name)}")
    if config.batch_line_error_rate + config.batch_line_permanent_rate > 1.0 + 1e-9:
        problems.append("batch_line_error_rate + batch_line_permanent_rate must be at most 1")
    return problems
